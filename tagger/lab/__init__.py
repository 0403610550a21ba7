"""Measurements, not library: the speed benchmarks, the quality benchmark
(baselines, source groups) and the README demo."""
