"""The ``ecgsoup`` parser and entry point: every sub-command registered, every error one line."""

from __future__ import annotations

import argparse
import os
import sys

from ecgsoup.cli import benchmark, convert, demo, embed, evaluate, info, models, pretrain
from ecgsoup.cli.common import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CLIError, error_line

__all__ = ["COMMANDS", "build_parser", "main"]

# The sub-command modules, in the order `ecgsoup --help` lists them.  Each has an
# `add_parser(sub)` that calls `sub.add_parser(...)` and sets `func` to its `run(args)`;
# a new command is a new module listed here.
COMMANDS = (benchmark, convert, demo, embed, evaluate, info, models, pretrain)


def build_parser() -> argparse.ArgumentParser:
    """The ``ecgsoup`` argument parser with every sub-command.

    Returns
    -------
    parser : argparse.ArgumentParser
    """
    from ecgsoup._version import __version__

    parser = argparse.ArgumentParser(
        prog="ecgsoup",
        description="Layer-wise ECG foundation-model features.",
        epilog="Exit status: 0 done; 2 a problem you can fix (printed as one line) or some records could not "
        "be embedded (each is listed); 130 interrupted (finished work is kept).",
    )
    parser.add_argument("--version", action="version", version=f"ecgsoup {__version__}")
    sub = parser.add_subparsers(dest="command", required=False)
    # Every sub-command's --help shows its defaults.
    plain = sub.add_parser

    def add_parser(name, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        return plain(name, **kwargs)

    sub.add_parser = add_parser
    for command in COMMANDS:
        command.add_parser(sub)
    for choice in sub.choices.values():
        _say_defaults(choice)
    return parser


def _say_defaults(parser: argparse.ArgumentParser) -> None:
    """Give every option with a default a help line that shows it (nested sub-commands too)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _say_defaults(child)
        elif action.option_strings and action.help is None and action.default is not None and action.default is not False:
            action.help = "(default: %(default)s)"


def main(argv=None) -> int:
    """Run the ``ecgsoup`` command line.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments after ``ecgsoup``; ``None``: ``sys.argv[1:]``.

    Returns
    -------
    status : int
        ``0`` done; ``2`` a problem the user can fix, printed as one line on
        stderr, or records that could not be embedded (each listed);
        ``130`` interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare `ecgsoup`: the overview, not an error
        parser.print_help()
        return EXIT_OK
    from ecgsoup.backbones.stmem import WeightsError

    try:
        return args.func(args)
    except (CLIError, WeightsError) as error:
        # Unusable weights (wrong layout, ambiguous rate, corrupt file) are a user-fixable problem too.
        print(f"ecgsoup {args.command}: error: {str(error).splitlines()[0]}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as interrupt:
        # Ctrl-C: one line, no traceback.  An embedding run says what it saved (EmbedInterrupted).
        print(f"ecgsoup {args.command}: {str(interrupt) or 'interrupted'}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - whatever a hostile input reaches: one line, never a traceback
        if os.environ.get("ECGSOUP_TRACEBACK"):
            raise
        print(f"ecgsoup {args.command}: error: {error_line(error)}", file=sys.stderr)
        return EXIT_USAGE
