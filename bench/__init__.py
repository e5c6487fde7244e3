"""meshkit benchmarks: each module runs meshkit beside its peer in one run and prints ratios."""
