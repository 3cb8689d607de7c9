"""Benchmark harness: recon end to end against a bare DuckDB join on the same data."""
