"""`python -m bench SUBCOMMAND [OPTIONS]`: run one benchmark (see `python -m bench --help`)."""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module in bench/, help)
COMMANDS = {
    "batch": ("batch", "batch operations through the API and worker vs the same SQL by hand"),
    "dialing": ("dialing", "dialing throughput against the fake provider at 1, 10 and 100 calls/s"),
    "webhook": ("webhook", "signed status callbacks per second through the API under gunicorn"),
    "lists": ("lists", "GET /api/contacts latency with a metadata filter on 1,000,000 contacts"),
    "imports": ("imports", "a 1,000,000-row CSV imported through the API and worker vs the same rows by hand"),
}
ALL5 = ("dialing", "webhook", "lists")  # issue 5


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m bench", description="scfm benchmarks (figures, no assertions)")
    sub = root.add_subparsers(dest="command", required=True)
    for command, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"bench.{module_name}")
        module.add_arguments(sub.add_parser(
            command, help=help_text, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        ))
    sub.add_parser(
        "all5", help="dialing, webhook and lists (issue 5), each with its defaults",
        description="Runs `dialing`, `webhook` and `lists` one after the other, each with its default options and "
                    "its own throwaway database; exits non-zero if one failed.",
    )
    return root


def main(argv: list[str] | None = None) -> int:
    root = parser()
    args = root.parse_args(argv)
    if args.command == "all5":
        from bench.common import progress

        codes = {}
        for command in ALL5:
            progress(f"===== {command}")
            print(f"\n===== python -m bench {command}", flush=True)
            codes[command] = main([command])
            if codes[command] == 130:  # Ctrl-C: stop here
                return 130
        failed = [command for command, code in codes.items() if code]
        if failed:
            progress(f"failed: {', '.join(failed)}")
        return 1 if failed else 0
    module = importlib.import_module(f"bench.{COMMANDS[args.command][0]}")
    return module.main(args)


if __name__ == "__main__":
    sys.exit(main())
