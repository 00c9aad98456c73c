"""Benchmarks: scripts that print timing ratios against baselines measured in the same run."""
