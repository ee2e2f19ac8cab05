"""Benchmarks: `make bench` (python -m bench). See the README's Performance section and bench/HISTORY.md."""
