import sys

from surge.cli.main import main

sys.exit(main())
