"""`surge train CONFIG [--resume RUN_DIR] [overrides]`: see :mod:`surge.train`."""

from surge.train import add_arguments as add_parser  # noqa: F401
from surge.train import run  # noqa: F401
