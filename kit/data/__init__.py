"""kit.data: character datasets (extract, generate, check, build)."""
