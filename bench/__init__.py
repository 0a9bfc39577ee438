"""Benchmarks: ``make bench`` (``python -m bench``); ``BENCH_QUICK=1`` for smaller sizes.

Starts its own embedded nx-27017 in a temporary folder, serves the real application and a minimal
Tornado handler from this process, drives both with concurrent HTTP requests and writes the figures
to ``docs/benchmarks.md``.
"""
