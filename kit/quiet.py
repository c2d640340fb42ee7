"""Known-noise log lines that every run printed, dropped by their exact text; other messages still show.

- "`get_max_cache()` is deprecated" (transformers 4.48): InternLM2's remote modelling code calls
  Cache.get_max_length(); only a new modeling_internlm2.py can stop that, and it works until
  transformers removes the method.
- "The attention mask is not set …" (transformers): generate() without an attention_mask when pad ==
  eos. The real fix is passing one (kit.hf_models does); XTuner's EvaluateChatHook and `xtuner chat`
  do not, and kit does not own those calls. Their input is one unpadded sequence, so the mask is all ones.
- "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'"
  (bitsandbytes 0.50.2, at import on a CPU with AVX512-BF16): an optional fused 4-bit CPU kernel that
  would be downloaded from the Hugging Face Hub; without it bitsandbytes uses its own CPU code. Only a
  different failure (e.g. kernels installed but the download refused) still shows.

Logging filters, not warnings.filterwarnings: both libraries send these through their loggers.
Two places install them: `import kit` (every kit process, and XTuner's run of a recipe), and
kit-quiet.pth, which an install of kit puts in site-packages (setup.py) so that the `xtuner chat`,
`xtuner convert` and `xtuner train` a participant types are quiet too.
"""

import logging

NOISE = {  # logger -> the start of the one message dropped from it
    "transformers.cache_utils": "`get_max_cache()` is deprecated",
    "transformers.generation.utils": "The attention mask is not set and cannot be inferred",
    "bitsandbytes.backends.cpu.ops": "Failed to load CPU gemm_4bit_forward from kernels-community: "
                                     "No module named 'kernels'",
}


class DropMessage(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def quiet_known_noise() -> None:
    """Idempotent; works before transformers or bitsandbytes is imported (loggers are looked up by name)."""
    for name, prefix in NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropMessage) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(DropMessage(prefix))
