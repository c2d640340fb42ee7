"""`kit lab check N`: each lab's artifacts, verified by the stage code that made them.

A check never trusts a file's presence alone: the dataset goes through `kit data check`, the adapter
is loaded with PEFT, the merged model's logits are compared with base+adapter, the server is started
and asked, the report is read. Each step becomes a Finding; a stage that has not landed is "pending".
"""

from dataclasses import dataclass
from pathlib import Path

from kit.labs.findings import MISSING, OK, Finding, attempt


@dataclass(frozen=True)
class Ctx:
    workdir: Path
    character: str

    @property
    def base(self) -> Path:
        return self.workdir / "base"

    def fix(self, lab: int, command: str) -> str:
        return f"{command}   (lab {lab}: kit lab show {lab})"


def lab0(ctx: Ctx) -> list[Finding]:
    from kit.doctor import FAIL, run_checks

    checks = run_checks()
    failed = [Finding(f"kit doctor: {c.name}", MISSING, c.detail, c.fix) for c in checks if c.status == FAIL]
    return failed or [Finding("kit doctor", OK, f"{len(checks)} checks, no blocking problem")]


def base_chats(ctx: Ctx) -> str:
    from kit.labs.models import chat_once, load
    from kit.persona import persona_for

    persona = persona_for(ctx.character)
    tokenizer, model = load(ctx.base, ctx.fix(1, f"kit lab init --workdir {ctx.workdir}"))
    reply = chat_once(tokenizer, model, persona.system_prompt, persona.probe_questions[0])
    return f"{persona.probe_questions[0]} → {reply[:40]!r}"


def lab1(ctx: Ctx) -> list[Finding]:
    return [attempt("base model answers a chat (its own chat template)", lambda: base_chats(ctx),
                    ctx.fix(1, f"kit lab init --workdir {ctx.workdir}  (GPU: download InternLM2-Chat-1.8B "
                               f"into {ctx.base})"))]


LABS = {0: lab0, 1: lab1}


def run_lab_check(n: int, workdir: Path, character: str) -> list[Finding]:
    return LABS[n](Ctx(Path(workdir), character))
