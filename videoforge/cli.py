"""The `videoforge` command line: parses arguments and delegates to one typed function each.

Each subcommand has an `_add_<name>(subparsers)` function that declares its arguments and sets
`func` to a small adapter calling into the package. Keep the work itself out of this file.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence


class CLIError(Exception):
    """An error the user can fix; printed as one line, without a traceback."""


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="generate a video with the bundled tiny model (what `make demo` runs)")
    p.add_argument("--out", default="out/demo.mp4", help="where to write the mp4 (default: %(default)s)")

    def run(args: argparse.Namespace) -> int:
        from videoforge.bundled import bundled_model_dir

        model_dir = bundled_model_dir()
        if model_dir is None:
            print(
                "videoforge: no bundled model yet. The tiny default model ships with a later release; "
                "the package is installed and `make test` runs the test suite.",
            )
            return 0
        return main(["generate", "--prompt", "a red circle moving to the right", "--out", args.out])

    p.set_defaults(func=run)


# Subcommands, in the order `--help` lists them. Each area adds its `_add_*` function here.
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_demo,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videoforge",
        description="HunyuanVideo-style video generation, curation, captioning and training.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CLIError as e:
        print(f"videoforge {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
