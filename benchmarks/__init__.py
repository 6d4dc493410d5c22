"""Measured figures for mtu: `python -m benchmarks [--quick]` writes BENCHMARKS.md and benchmarks.json."""
