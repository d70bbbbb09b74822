"""`python -m bench [--smoke] SUITE [OPTIONS]` (`./dev bench ...`): run a benchmark, or all of them."""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from bench.common import progress

# suite (its module in bench/) -> (what it measures, its options at smoke size)
SUITES = {
    "batch": ("populating a callout, creating its calls and the preview pages vs the same SQL by hand",
              ["--contacts", "2000"]),
    "dialing": ("six accounts dialing at once, and six sharing the server's provider account",
                ["--accounts-rate", "5", "--seconds", "2"]),
    "webhook": ("a signed status callback's CPU through the app vs the same work by hand", ["--requests", "40"]),
    "lists": ("GET /api/contacts with a metadata filter on 1,000,000 contacts vs the bare SQL",
              ["--contacts", "25000", "--requests", "40", "--pages", "1,2,500"]),
    "sweeper": ("the sweeper's enqueues per minute and Redis memory with 100,000 silent calls",
                ["--calls", "300", "--minutes", "1"]),
    "capacity": ("the highest rate one machine dials end to end, every status callback ingested",
                 ["--rates", "5,20", "--seconds", "4"]),
    "imports": ("a 1,000,000-row CSV imported through the API and worker vs the same rows by hand",
                ["--rows", "3000", "--small", "1000"]),
    "statistics": ("GET /api/callouts/:id/statistics on 1,000,000 participations vs a bare count(*)",
                   ["--participations", "3000", "--requests", "30"]),
    "dashboard": ("the dashboard's pages on an account with 1,000,000 contacts: p50, p99 and size",
                  ["--contacts", "3000", "--participations", "1500", "--calls", "600", "--callouts", "3",
                   "--requests", "3"]),
}


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m bench", description="scfm benchmarks (figures, no assertions). "
                                   "Each makes and drops its own database and queue.")
    root.add_argument("--smoke", action="store_true",
                      help="every benchmark at a tiny size, to check that it still runs (also SCFM_BENCH_SMOKE=1)")
    sub = root.add_subparsers(dest="suite", required=True)
    for suite, (help_text, _smoke) in SUITES.items():
        module = importlib.import_module(f"bench.{suite}")
        module.add_arguments(sub.add_parser(suite, help=help_text, description=module.__doc__,
                                            formatter_class=argparse.RawDescriptionHelpFormatter))
    sub.add_parser("all", help="every benchmark, each with its defaults; exits non-zero if one failed")
    return root


def interrupted(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str]) -> int:
    smoke = "--smoke" in argv or bool(os.environ.get("SCFM_BENCH_SMOKE"))
    argv = [arg for arg in argv if arg != "--smoke"]  # before or after the suite's name
    chosen = parser().parse_args(argv).suite  # --help, and errors, before anything runs
    signal.signal(signal.SIGTERM, interrupted)
    codes = {}
    for suite in SUITES if chosen == "all" else [chosen]:
        if chosen == "all":
            print(f"\n===== {suite}{' (smoke)' if smoke else ''}", flush=True)
        options = SUITES[suite][1] if smoke else []
        args = parser().parse_args([suite, *options, *([] if chosen == "all" else argv[argv.index(suite) + 1:])])
        codes[suite] = importlib.import_module(f"bench.{suite}").main(args)
        if codes[suite] == 130:  # Ctrl-C, SIGTERM: stop here
            return 130
    if failed := [suite for suite, code in codes.items() if code]:
        progress(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
