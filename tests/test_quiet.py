"""The known-noise log lines every run printed are gone, in kit's processes and in the `xtuner` commands a
participant types (kit-quiet.pth); the libraries' other messages stay."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from kit_testing import ROOT, run_kit

NOISE_SEEN = ("get_max_cache()", "attention mask is not set", "No module named 'kernels'")

TRIGGER = """
import kit
import logging
from transformers.cache_utils import DynamicCache
from transformers.generation.utils import logger
DynamicCache().get_max_length()  # what InternLM2's remote code calls
logger.warning_once("The attention mask is not set and cannot be inferred from input because pad token is same "
                    "as eos token.")
logger.warning("Setting `pad_token_id` to `eos_token_id`:2 for open-end generation.")
bnb = logging.getLogger("bitsandbytes.backends.cpu.ops")  # what bitsandbytes 0.50.2 logs at import
bnb.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure you already "
            "`pip install kernels` and the kernels >= 0.11.1", ModuleNotFoundError("No module named 'kernels'"))
bnb.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s.", OSError("the Hub refused"))
"""


def test_importing_kit_drops_exactly_the_known_noise():
    done = subprocess.run([sys.executable, "-S", "-c", TRIGGER], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]})
    assert done.returncode == 0, done.stderr[-2000:]  # -S: no kit-quiet.pth, so `import kit` alone does it
    assert not [line for line in NOISE_SEEN if line in done.stderr], done.stderr
    assert "Setting `pad_token_id`" in done.stderr and "the Hub refused" in done.stderr  # no blanket silence


def test_a_kit_command_that_generates_prints_none(tmp_path, tiny_model):
    """Before: `kit lab check 1` printed the get_max_cache() deprecation under its table."""
    (tmp_path / "base").symlink_to(tiny_model)
    done = run_kit("lab", "check", "1", "--workdir", str(tmp_path))
    assert "lab passed" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
    assert not [line for line in NOISE_SEEN if line in done.stderr], done.stderr[-2000:]


def test_xtuner_chat_typed_by_a_participant_prints_only_its_dialogue(tiny_model):
    """Lab 1's `xtuner chat` never imports kit: before kit-quiet.pth it printed bitsandbytes' `No module
    named 'kernels'` (twice, on an AVX512-BF16 CPU) and both transformers warnings above its reply."""
    xtuner = Path(sys.executable).parent / "xtuner"
    done = subprocess.run([str(xtuner), "chat", str(tiny_model), "--prompt-template", "internlm2_chat",
                           "--torch-dtype", "fp32", "--max-new-tokens", "16"], input="你是谁？\n\nEXIT\n\n",
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MKL_SERVICE_FORCE_INTEL": "1",  # xtuner runs the `python` on PATH
                               "PATH": f"{xtuner.parent}{os.pathsep}{os.environ['PATH']}"})
    said = done.stdout + done.stderr
    assert done.returncode == 0 and "Log: Exit!" in said, said[-3000:]
    assert not [line for line in NOISE_SEEN if line in said], said[-3000:]
