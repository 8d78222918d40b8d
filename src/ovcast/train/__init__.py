"""Training and evaluation: datasets from CSV, the training loop, metrics and baselines."""
