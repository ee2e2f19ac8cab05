"""Benchmarks: `make bench` (python -m bench). See bench/README.md and the README's Performance section."""
