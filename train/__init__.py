"""kit.train: XTuner recipes, preflight and the training launcher."""
