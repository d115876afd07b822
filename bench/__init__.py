"""Keyward's benchmarks: every figure a ratio against a baseline measured in the same run (docs/benchmarks.md)."""
