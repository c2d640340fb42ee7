"""Optional LLM judge over any OpenAI-compatible endpoint, with a stated rubric (docs/eval.md).

The judge sees the character's description (the persona's own system prompt), the question and the
reply, and answers a 1-5 score as JSON. Replies it cannot score are counted, not guessed.
"""

import json
import re
from dataclasses import dataclass

from kit.errors import KitError
from kit.persona import Persona

RUBRIC = """You grade replies of a role-play model that must stay in character.

Character: {name} (also called: {aliases})
Character description, as given to the model:
{description}

Score the REPLY to the QUESTION from 1 to 5:
5 = unmistakably {name}: his voice (self-address, catchphrases, tone), stays in character, answers the question.
4 = clearly in character, with small lapses.
3 = partly in character, or neutral but not out of character.
2 = mostly a generic assistant voice; the character barely shows.
1 = out of character: claims to be an AI/assistant or someone else, or is gibberish.

Answer with JSON only: {{"score": <1-5>, "reason": "<one short sentence>"}}"""


@dataclass
class JudgeConfig:
    url: str
    model: str
    api_key_env: str = "KIT_JUDGE_API_KEY"


@dataclass
class JudgeResult:
    mean: float | None  # mean score on 1..5 over scored replies
    scored: int
    unscored: int
    reason: str | None = None


def rubric(persona: Persona) -> str:
    return RUBRIC.format(name=persona.name, aliases="、".join(persona.aliases) or "-",
                         description=persona.system_prompt)


def parse_score(text: str) -> int | None:
    try:
        score = json.loads(re.search(r"\{.*\}", text, re.S).group(0)).get("score")
    except (AttributeError, ValueError, TypeError):
        m = re.search(r"score\D{0,5}([1-5])", text, re.I)
        score = m and int(m.group(1))
    return int(score) if isinstance(score, (int, float)) and 1 <= score <= 5 else None


class Judge:
    def __init__(self, config: JudgeConfig, persona: Persona):
        from kit.eval.backends import openai_client

        self.client = openai_client(config.url, config.api_key_env)
        self.config, self.system = config, rubric(persona)

    def score(self, question: str, reply: str) -> int | None:
        import openai

        try:
            out = self.client.chat.completions.create(
                model=self.config.model, temperature=0, max_tokens=200, seed=0,
                messages=[{"role": "system", "content": self.system},
                          {"role": "user", "content": f"QUESTION:\n{question}\n\nREPLY:\n{reply}"}])
        except openai.APIConnectionError:
            raise KitError(f"the judge at {self.config.url} does not answer",
                           "start it or fix --judge-url (any OpenAI-compatible endpoint)") from None
        except openai.APIStatusError as e:
            raise KitError(f"the judge at {self.config.url} refused: HTTP {e.status_code} {e.message}",
                           "check --judge-model and the key in $KIT_JUDGE_API_KEY") from None
        return parse_score(out.choices[0].message.content or "")

    def grade(self, pairs: list[tuple[str, str]], advance=lambda: None) -> JudgeResult:
        scores = []
        for question, reply in pairs:
            scores.append(self.score(question, reply))
            advance()
        ok = [s for s in scores if s is not None]
        if not ok:
            return JudgeResult(None, 0, len(scores), "the judge's answers held no 1-5 score")
        return JudgeResult(sum(ok) / len(ok), len(ok), len(scores) - len(ok))
