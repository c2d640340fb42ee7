"""`kit quantize` and `kit serve`."""

from kit.errors import NotBuiltYet


def quantize():
    """LMDeploy AWQ W4A16 with calibration from the character's data; KV-cache settings."""
    raise NotBuiltYet("kit quantize", 6)


def serve():
    """OpenAI-compatible endpoints for base and tuned, then the Streamlit compare page."""
    raise NotBuiltYet("kit serve", 6)
