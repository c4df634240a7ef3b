"""Benchmarks: scripts that measure this project against its targets and peers, each run from the repository
root as a module (`.venv/bin/python -m benchmarks.NAME --help`).

Each writes what it measured as a stamped JSON file under `benchmarks/results/` (`benchmarks.results`), and
docs/benchmarks.md's tables are generated from those files by `docs/tables.py`. Shared parts live in one
module each: the stamp and the results file (`results`), a real `serve` on a free port (`server`), MovieLens
and other ratings (`datasets`), the paired bootstrap (`paired`).
"""
