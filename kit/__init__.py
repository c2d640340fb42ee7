"""kit: a role-play fine-tuning workshop kit (InternLM2 + XTuner + LMDeploy + Streamlit)."""

from pathlib import Path

from kit.quiet import quiet_known_noise

__version__ = "0.1.0"

# The stages kit.train, kit.convert and kit.serve live in the checkout's top-level train/, convert/ and
# serve/ (PRODUCT.md's layout); an install maps them under kit/ (pyproject's package-dir). Python run
# from the checkout's root (`python -m xtuner.tools.train recipes/…`) imports this kit/ before any
# installed copy, without that mapping: let the package path reach the stage folders here too.
_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "train" / "__init__.py").is_file():
    __path__.append(str(_checkout))

# At import, so every kit process is covered: the CLI, the servers it starts, and
# XTuner's own run of a recipe (which imports kit.train.hooks).
quiet_known_noise()
