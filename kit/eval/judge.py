"""Optional LLM judge over any OpenAI-compatible endpoint, with a stated rubric (docs/eval.md).

The judge sees the character's description (the persona's own system prompt), the question and the
reply, and answers a 1-5 score as JSON. Replies it cannot score are counted, not guessed; so is an
answer that is no chat completion at all (cut off, an HTML page): asked once more, then counted as
unscored with what came back quoted in the reason, so one glitch of a paid API never loses a run.
"""

import json
import re
from dataclasses import dataclass

from kit.errors import KitError
from kit.eval.api import BadAnswer, Server
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
    api_key_env: str | None = None  # the variable holding the judge's key (--judge-key-env); None: no key


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


JUDGE_START_FIX = "start it or fix --judge-url (any OpenAI-compatible endpoint)"


class Judge:
    def __init__(self, config: JudgeConfig, persona: Persona):
        self.server = Server(config.url, config.api_key_env, "--judge-key-env", JUDGE_START_FIX)
        self.server.check()  # a dead judge or a refused key stops the run before any work, not after it
        self.config, self.system = config, rubric(persona)

    def score(self, question: str, reply: str) -> int | None:
        """The judge's 1-5 score; BadAnswer when it answered no chat completion twice."""
        import openai

        body = dict(model=self.config.model, temperature=0, max_tokens=200, seed=0,
                    messages=[{"role": "system", "content": self.system},
                              {"role": "user", "content": f"QUESTION:\n{question}\n\nREPLY:\n{reply}"}])
        for _ in range(2):  # once may be a glitch on the way (a cut body); twice is the judge
            try:
                return parse_score(self.server.chat(**body))
            except openai.APIStatusError as e:
                raise KitError(f"the judge at {self.server.url} refused: HTTP {e.status_code} {e.message}",
                               "check --judge-model and --judge-url") from None
            except BadAnswer as e:
                broken = e
        raise broken

    def grade(self, pairs: list[tuple[str, str]], advance=lambda: None) -> JudgeResult:
        scores, broken = [], []
        for question, reply in pairs:
            try:
                scores.append(self.score(question, reply))
            except BadAnswer as e:
                scores.append(None)
                broken.append(str(e))
            advance()
        ok = [s for s in scores if s is not None]
        reasons = []
        if broken:
            reasons.append(f"{len(broken)} of {len(scores)} judge answers were no chat completion, twice "
                           f"each; the first: {broken[0]}")
        if len(ok) + len(broken) < len(scores):
            reasons.append(f"{len(scores) - len(ok) - len(broken)} of {len(scores)} answers held no 1-5 score")
        mean = sum(ok) / len(ok) if ok else None
        return JudgeResult(mean, len(ok), len(scores) - len(ok), "; ".join(reasons) or None)
