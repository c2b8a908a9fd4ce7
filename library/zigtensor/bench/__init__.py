"""Benchmark suites: each compares zigtensor with its reference side by side in one process."""
