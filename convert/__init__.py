"""kit.convert: checkpoint -> HF adapter -> merged, verified model."""
