import os
from pathlib import Path

import pytest

os.environ.setdefault("MKL_SERVICE_FORCE_INTEL", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The cached tiny InternLM2 for bajie (built once per machine; shared, read-only)."""
    from kit.tiny import build_tiny_model

    return build_tiny_model()
