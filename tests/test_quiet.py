"""The two transformers warnings every generation printed are gone; transformers' other warnings stay."""

import subprocess
import sys

from kit_testing import ROOT, run_kit

TRIGGER = """
import kit
from transformers.cache_utils import DynamicCache
from transformers.generation.utils import logger
DynamicCache().get_max_length()  # what InternLM2's remote code calls
logger.warning_once("The attention mask is not set and cannot be inferred from input because pad token is same "
                    "as eos token.")
logger.warning("Setting `pad_token_id` to `eos_token_id`:2 for open-end generation.")
"""


def test_importing_kit_drops_exactly_the_two_messages():
    done = subprocess.run([sys.executable, "-c", TRIGGER], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "get_max_cache()" not in done.stderr and "attention mask is not set" not in done.stderr
    assert "Setting `pad_token_id`" in done.stderr  # the filter is no blanket silence


def test_a_kit_command_that_generates_prints_neither(tmp_path, tiny_model):
    """Before: `kit lab check 1` printed the get_max_cache() deprecation under its table."""
    (tmp_path / "base").symlink_to(tiny_model)
    done = run_kit("lab", "check", "1", "--workdir", str(tmp_path))
    assert "lab passed" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
    assert "get_max_cache()" not in done.stderr and "attention mask is not set" not in done.stderr
