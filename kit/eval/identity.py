"""Identity consistency on the persona's probe questions.

The fixed rubric: a reply is consistent when it (a) names the character (persona name or any alias from
persona.yaml) and (b) claims none of the generic identities below. A generic term right after a negation
("俺老猪可不是什么人工智能") is a denial, not a claim. A garbled reply (see style.py) names no one.
"""

import re
from dataclasses import dataclass

from kit.eval.style import is_garbled
from kit.persona import Persona

# What a role-play model must not say it is: the assistant identities its base model was tuned into.
GENERIC_IDENTITIES = ("人工智能", "AI", "语言模型", "大模型", "智能助手", "助手", "机器人", "InternLM", "书生",
                      "浦语", "上海人工智能实验室", "ChatGPT", "OpenAI", "assistant", "language model")
NEGATIONS = ("不是", "并非", "哪是", "不算", "不叫", "别把", "not", "n't")
NEGATION_WINDOW = 8  # characters before a generic term that are searched for a negation


@dataclass
class IdentityResult:
    rate: float  # consistent replies / probe replies
    names_self: float  # share naming the character
    generic_claims: float  # share claiming a generic identity
    replies: int


def _term_pattern(term: str) -> re.Pattern:
    # Latin terms must stand alone ("AI" is not the "ai" in "said").
    return re.compile(rf"(?<![A-Za-z]){re.escape(term)}(?![A-Za-z])" if term.isascii() else re.escape(term),
                      re.IGNORECASE)


PATTERNS = [_term_pattern(t) for t in GENERIC_IDENTITIES]


def generic_claims(reply: str) -> list[str]:
    found = []
    for pattern in PATTERNS:
        for m in pattern.finditer(reply):
            before = reply[max(0, m.start() - NEGATION_WINDOW):m.start()].lower()
            if not any(neg in before for neg in NEGATIONS):
                found.append(m.group(0))
    return found


def names_self(reply: str, persona: Persona) -> bool:
    return not is_garbled(reply) and any(n in reply for n in [persona.name, *persona.aliases])


def identity_consistency(replies: list[str], persona: Persona) -> IdentityResult:
    named = [names_self(r, persona) for r in replies]
    claims = [bool(generic_claims(r)) for r in replies]
    n = max(len(replies), 1)
    ok = sum(a and not c for a, c in zip(named, claims))
    return IdentityResult(ok / n, sum(named) / n, sum(claims) / n, len(replies))
