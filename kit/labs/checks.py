"""`kit lab check N`: each lab's artifacts, verified by the stage code that made them.

A check never trusts a file's presence alone: the dataset goes through `kit data check`, the adapter
is loaded with PEFT, the merged model's logits are compared with base+adapter, the server is started
and asked, the report is read. Each step becomes a Finding; a stage that has not landed is "pending".
"""

import json
from dataclasses import dataclass
from pathlib import Path

from kit.labs.findings import INFO, MISSING, OK, Finding, Missing, attempt, need


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


def data_passes_check(ctx: Ctx, name: str) -> str:
    from kit.data.check import check_file
    from kit.persona import persona_for

    path = need(ctx.workdir / "data" / name, ctx.fix(2, f"kit data build {ctx.character} -o {ctx.workdir}/data"))
    tokenizer = ctx.base if (ctx.base / "config.json").is_file() else None
    problems = check_file(path, persona_for(ctx.character).system_prompt, tokenizer)
    if problems:
        shown = "\n".join(problems[:5]) + (f"\n… {len(problems) - 5} more" if len(problems) > 5 else "")
        raise Missing(shown, f"fix those lines, or rebuild: kit data build {ctx.character} -o {ctx.workdir}/data")
    lines = len(path.read_text(encoding="utf-8").splitlines())
    return f"{lines} samples, persona system prompt in each, loads through XTuner's openai_map_fn"


def data_card(ctx: Ctx) -> str:
    card = json.loads(need(ctx.workdir / "data" / "card.json",
                           ctx.fix(2, f"kit data build {ctx.character} -o {ctx.workdir}/data"))
                      .read_text(encoding="utf-8"))
    return f"card for {card.get('name')}: counts {card.get('counts')}"


def lab2(ctx: Ctx) -> list[Finding]:
    build = ctx.fix(2, f"kit data build {ctx.character} -o {ctx.workdir}/data")
    return [attempt("data/train.jsonl passes kit data check", lambda: data_passes_check(ctx, "train.jsonl"), build),
            attempt("data/eval.jsonl passes kit data check", lambda: data_passes_check(ctx, "eval.jsonl"), build),
            attempt("dataset card", lambda: data_card(ctx), build)]


def quantized(ctx: Ctx) -> Finding:
    import torch

    out = ctx.workdir / "merged-w4a16"
    if (out / "kit_quant.json").is_file():
        return Finding("W4A16 model", OK, str(out))
    if not torch.cuda.is_available():
        return Finding("W4A16 model", INFO, "skipped: LMDeploy's AWQ needs a GPU (30% A100 slice)")
    return Finding("W4A16 model", MISSING, f"{out} has no kit_quant.json",
                   ctx.fix(5, f"kit quantize {ctx.workdir}/merged --w4a16"))


def lab5(ctx: Ctx) -> list[Finding]:
    from kit.labs.serving import ask_servers

    models = {"base": ctx.base, "tuned": ctx.workdir / "merged"}
    serve = ctx.fix(4, f"kit merge … (lab 4) so that {models['tuned']} exists, then kit lab check 5")

    def answers() -> str:
        for path in models.values():
            need(path / "config.json", serve)
        return ask_servers(models, ctx.character)

    return [attempt("servers answer the openai client (base + tuned, plain + stream, persona default)",
                    answers, serve), quantized(ctx)]


LABS = {0: lab0, 1: lab1, 2: lab2, 5: lab5}


def run_lab_check(n: int, workdir: Path, character: str) -> list[Finding]:
    return LABS[n](Ctx(Path(workdir), character))
