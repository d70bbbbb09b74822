"""Benchmarks of scfm against the real PostgreSQL and Redis: `python -m bench SUITE` (`./dev bench ...`). Each
builds its own throwaway database and queue, drives the real API and processes, prints figures (never asserts
on time) and removes both when it ends."""
