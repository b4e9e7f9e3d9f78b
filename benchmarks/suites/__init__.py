"""Benchmark suites: one module per suite, each defining ``SUITE`` (see ``benchmarks.suite``)."""
