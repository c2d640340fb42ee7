"""kit.eval: persona metrics for base vs tuned."""
