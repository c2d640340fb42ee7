"""Two transformers 4.48 warnings that every generation printed, dropped by their exact text.

- "`get_max_cache()` is deprecated": InternLM2's remote modelling code calls Cache.get_max_length();
  only a new modeling_internlm2.py can stop that, and it works until transformers removes the method.
- "The attention mask is not set …": generate() without an attention_mask when pad == eos. The
  real fix is passing one (kit.hf_models does); XTuner's EvaluateChatHook does not, and kit does not
  own that call.

Logging filters, not warnings.filterwarnings: transformers sends both through its loggers.
"""

import logging

NOISE = {  # logger -> the start of the one message dropped from it; its other messages still show
    "transformers.cache_utils": "`get_max_cache()` is deprecated",
    "transformers.generation.utils": "The attention mask is not set and cannot be inferred",
}


class DropMessage(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def quiet_generation_warnings() -> None:
    """Idempotent; works before transformers is imported (its loggers are looked up by name)."""
    for name, prefix in NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropMessage) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(DropMessage(prefix))
