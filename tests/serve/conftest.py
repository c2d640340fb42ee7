import sys
from pathlib import Path

import pytest

# pytest's importlib mode puts only tests/ on sys.path; the serve helpers live beside this file.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tuned_model(make_demo):
    """The demo's merged model: the tiny base LoRA-tuned on 八戒 by recipes/bajie.py."""
    return make_demo[0] / "merged"
