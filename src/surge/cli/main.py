"""`surge` command line: one module per subcommand, each exposing ``add_parser`` and ``run``.

A subcommand's ``run(args) -> int`` returns the exit code. Expected failures raise
:class:`surge.errors.SurgeError`; they are printed as one line, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import warnings

# Subcommand name -> module under surge.cli. Imported lazily so `surge --help` stays fast
# and a missing optional dependency of one command cannot break the others.
SUBCOMMANDS = {
    "upscale": "Upscale images x4 with a model.",
    "info": "Describe a model: architecture, scale, parameters, FLOPs, precisions, provenance.",
    "models": "List the built-in and bundled models.",
    "eval": "Evaluate a model on benchmark sets (PSNR-Y/SSIM-Y, MATLAB protocol).",
    "compare": "Write a markdown table and zoomed-crop figure comparing models.",
    "diff": "Is model B better than model A on the same images? Paired differences with confidence intervals.",
    "train": "Train a model from an experiment config.",
    "export": "Export a model to ONNX.",
    "interpolate": "Blend two models' weights (network interpolation): PSNR model + its GAN fine-tune.",
    "degrade": "Make a real-world benchmark: blurred, noisy, JPEG-compressed LR from benchmark sets' HR.",
    "serve": "A local web page and HTTP API for upscaling (drag and drop, before/after, download).",
}


def _module(name: str):
    return importlib.import_module(f"surge.cli.{name}_cmd")


def _chosen_command(argv: list[str]) -> str | None:
    """The subcommand named on the command line, if any (the first non-option word)."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in SUBCOMMANDS else None
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``argv``, only the chosen subcommand's module is imported.

    The subcommand modules import torch (~1-2 s); `surge --help` and `surge info --help` should not
    pay for the other six.
    """
    from surge import __version__

    parser = argparse.ArgumentParser(
        prog="surge",
        description="SuRGe 4x image super-resolution (arXiv 2404.06294).",
    )
    parser.add_argument("--version", action="version", version=f"surge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = _chosen_command(argv) if argv is not None else None
    for name, help_text in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if argv is not None and name != chosen:
            continue  # listed in the help, never parsed in this run
        module = _module(name)
        module.add_parser(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from surge.atomic import Terminated, handle_sigterm
    from surge.cli.messages import printable
    from surge.errors import SurgeError

    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv)
    if argv[:1] == ["train"]:
        from surge.train import parse_with_overrides

        args = parse_with_overrides(parser, argv)
    else:
        args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        with warnings.catch_warnings(), handle_sigterm():  # SIGTERM (`timeout`, `docker stop`, systemd) unwinds like Ctrl-C
            warnings.showwarning = _user_warnings(warnings.showwarning)
            return int(args._run(args) or 0)
    except SurgeError as exc:
        print(printable(f"surge: error: {exc}"), file=sys.stderr)
        return 2
    except Terminated:
        print("surge: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("surge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`surge models | head`): stop quietly, like other Unix tools. Python
        # would report the pipe again when it flushes stdout at exit, so point stdout at nothing.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for such a pipeline stage


def _user_warnings(default):
    """``warnings.showwarning`` that prints the library's warnings for users (SurgeWarning, e.g. an
    fp16 overflow recomputed in fp32) like the commands' own: one line, no source location."""
    from surge.errors import SurgeWarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, SurgeWarning):
            from tqdm import tqdm

            from surge.cli.messages import printable

            tqdm.write(printable(f"surge: warning: {message}"), file=sys.stderr)  # between progress-bar redraws
        else:
            default(message, category, filename, lineno, file, line)

    return show


if __name__ == "__main__":
    sys.exit(main())
