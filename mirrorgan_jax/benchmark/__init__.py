"""Benchmarks: speed and memory, printed as tables and written as JSON (never asserted in tests)."""
