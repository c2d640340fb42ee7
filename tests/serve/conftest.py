import sys
from pathlib import Path

import pytest

# pytest's importlib mode puts only tests/ on sys.path; the serve helpers live beside this file.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tuned_model():
    """A second tiny InternLM2 (other seed) standing in for the merged model."""
    from kit.tiny import build_tiny_model

    return build_tiny_model(seed=1)
