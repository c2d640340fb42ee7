"""Held-out perplexity: how likely the model finds the character's real replies given their context.

Token-weighted over the whole eval split (exp of total NLL / total reply tokens); only the final
assistant reply and its end-of-turn token count, never the system prompt or the user turns.
"""

import math
from dataclasses import dataclass

from kit.eval.backends import PerplexityUnavailable
from kit.eval.samples import Sample


@dataclass
class PerplexityResult:
    value: float | None
    tokens: int = 0
    samples: int = 0
    reason: str | None = None  # why value is None


def heldout_perplexity(model, samples: list[Sample], advance=lambda: None) -> PerplexityResult:
    nll, tokens = 0.0, 0
    for i, sample in enumerate(samples):
        try:
            score = model.reply_score(sample.messages)
        except PerplexityUnavailable as e:
            for _ in samples[i:]:
                advance()  # the progress bar still reaches its end
            return PerplexityResult(None, reason=str(e))
        nll, tokens = nll + score.nll, tokens + score.tokens
        advance()
    return PerplexityResult(math.exp(nll / tokens), tokens, len(samples))
