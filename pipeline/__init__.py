"""Formula recognition pipeline: one module per stage, each a pure function plus a thin CLI."""
