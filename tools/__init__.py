"""Developer tools for lbp-cds (benchmarks, soak test, value-set build)."""
