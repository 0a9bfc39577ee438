"""Benchmarks: ``make bench`` (``python -m bench``); ``BENCH_QUICK=1`` for smaller sizes.

Starts its own embedded nx-27017 in a temporary folder, serves the real application and a minimal
Tornado handler from this process, drives both with concurrent HTTP requests from a load generator
in a child process (``bench/load.py``), measures the CPU time of the app's and the database's
processes per request, and writes the figures to ``docs/benchmarks.md``.
"""
