"""`python -m bench SUBCOMMAND [OPTIONS]`: run one benchmark (see `python -m bench --help`)."""
from __future__ import annotations

import argparse
import sys


def parser() -> argparse.ArgumentParser:
    from bench import batch

    root = argparse.ArgumentParser(prog="python -m bench", description="scfm benchmarks (figures, no assertions)")
    sub = root.add_subparsers(dest="command", required=True)
    batch.add_arguments(sub.add_parser(
        "batch", help="batch operations through the API and worker vs the same SQL by hand",
        description=batch.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    ))
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "batch":
        from bench import batch

        return batch.main(args)
    return 2  # pragma: no cover - argparse refuses unknown commands


if __name__ == "__main__":
    sys.exit(main())
