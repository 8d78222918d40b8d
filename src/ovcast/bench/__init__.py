"""Benchmarks: side-by-side latency of forecasters, measured in alternation."""
