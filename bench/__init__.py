"""Benchmarks of brokerhooks, each printing a table (see docs/benchmarks.md)."""
