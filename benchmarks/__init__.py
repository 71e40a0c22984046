"""Timing and scale scripts, runnable as files (python benchmarks/X.py) and importable by
the self-tests (from benchmarks import realshape)."""
