"""`kit merge`."""

from kit.errors import NotBuiltYet


def merge():
    """Newest checkpoint -> HF adapter -> merged HF model, verified, persona chat template."""
    raise NotBuiltYet("kit merge", 5)
