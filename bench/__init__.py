"""Benchmarks of scfm against the real PostgreSQL and Redis: `python -m bench SUBCOMMAND` (`./dev bench ...`).

Each benchmark builds its own throwaway database and queue, drives the real API and worker, and removes
both when it ends. They print figures, never assert on time.
"""
