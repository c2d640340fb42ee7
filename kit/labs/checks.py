"""`kit lab check N`: each lab's artifacts, verified by the stage code that made them.

A check never trusts a file's presence alone: the dataset goes through `kit data check`, the adapter
is loaded with PEFT, the merged model's logits are compared with base+adapter, the server is started
and asked, the report is read. Each step becomes a Finding.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from kit.artifacts import COURSE_CHARACTER
from kit.errors import KitError
from kit.labs.findings import INFO, MISSING, OK, Finding, Missing, attempt, need
from kit.workspace import Workspace


@dataclass(frozen=True)
class Ctx:
    workdir: Path
    character: str

    @property
    def ws(self) -> Workspace:
        return Workspace(self.workdir)

    def fix(self, lab: int, command: str) -> str:
        return f"{command}   (lab {lab}: kit lab show {lab})"


def lab0(ctx: Ctx) -> list[Finding]:
    from kit.doctor import FAIL, run_checks

    checks = run_checks()
    failed = [Finding(f"kit doctor: {c.name}", MISSING, c.detail, c.fix) for c in checks if c.status == FAIL]
    return failed or [Finding("kit doctor", OK, f"{len(checks)} checks, no blocking problem")]


def init_fix(ctx: Ctx) -> str:
    return ctx.fix(1, f"kit lab init --workdir {ctx.workdir}  (GPU: download InternLM2-Chat-1.8B into {ctx.ws.base})")


def base_chats(ctx: Ctx) -> str:
    from kit.labs.models import chat_once, load
    from kit.persona import persona_for

    persona = persona_for(ctx.character)
    tokenizer, model = load(ctx.ws.base, init_fix(ctx))
    reply = chat_once(tokenizer, model, persona.system_prompt, persona.probe_questions[0])
    return f"{persona.probe_questions[0]} → {reply[:40]!r}"


def lab1(ctx: Ctx) -> list[Finding]:
    return [attempt("base model answers a chat (its own chat template)", lambda: base_chats(ctx), init_fix(ctx))]


def data_passes_check(ctx: Ctx, name: str) -> str:
    from kit.data.check import check_file
    from kit.persona import persona_for

    path = need(ctx.ws.data / name, ctx.fix(2, f"kit data build {ctx.character} -o {ctx.ws.data}"))
    tokenizer = ctx.ws.base if (ctx.ws.base / "config.json").is_file() else None
    problems = check_file(path, persona_for(ctx.character).system_prompt, tokenizer)
    if problems:
        shown = "\n".join(problems[:5]) + (f"\n… {len(problems) - 5} more" if len(problems) > 5 else "")
        raise Missing(shown, f"fix those lines, or rebuild: kit data build {ctx.character} -o {ctx.ws.data}")
    lines = len(path.read_text(encoding="utf-8").splitlines())
    return f"{lines} samples, persona system prompt in each, loads through XTuner's openai_map_fn"


def data_card(ctx: Ctx) -> str:
    card = json.loads(need(ctx.ws.data / "card.json",
                           ctx.fix(2, f"kit data build {ctx.character} -o {ctx.ws.data}"))
                      .read_text(encoding="utf-8"))
    return f"card for {card.get('name')}: counts {card.get('counts')}"


def lab2(ctx: Ctx) -> list[Finding]:
    build = ctx.fix(2, f"kit data build {ctx.character} -o {ctx.ws.data}")
    return [attempt("data/train.jsonl passes kit data check", lambda: data_passes_check(ctx, "train.jsonl"), build),
            attempt("data/eval.jsonl passes kit data check", lambda: data_passes_check(ctx, "eval.jsonl"), build),
            attempt("dataset card", lambda: data_card(ctx), build)]


def train_fix(ctx: Ctx) -> str:
    return ctx.fix(3, f"kit train recipes/{ctx.character}.py --cpu --base {ctx.ws.base} --data-dir {ctx.ws.data} "
                      f"--work-dir {ctx.ws.work}   (GPU: without --cpu)")


def trained(ctx: Ctx) -> str:
    from kit.train.run import checkpoints

    found = checkpoints(need(ctx.ws.work, train_fix(ctx)))
    if not found:
        raise Missing(f"no iter_N.pth checkpoint in {ctx.ws.work}", train_fix(ctx))
    return ", ".join(p.name for p in found)


def loss_falls(ctx: Ctx) -> str:
    from kit.train.report import loss_history

    losses = [loss for _, loss in loss_history(ctx.ws.work)]
    if len(losses) < 4:
        raise Missing(f"{len(losses)} logged losses in {ctx.ws.work}", train_fix(ctx))
    k = max(1, len(losses) // 5)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    if not last < first:
        raise Missing(f"loss did not fall: {first:.3f} → {last:.3f}", "check lr and data (lab 3, common errors)")
    return f"{first:.3f} → {last:.3f} over {len(losses)} logged iterations"


def chat_samples(ctx: Ctx) -> str:
    from kit.train.report import sample_table

    questions, steps, _ = sample_table(ctx.ws.work)
    if len(steps) < 2:
        raise Missing(f"EvaluateChatHook samples for {len(steps)} checkpoint(s) in {ctx.ws.work / 'samples'}",
                      train_fix(ctx))
    return f"{len(questions)} probe questions answered at iterations {', '.join(map(str, steps))}"


def lab3(ctx: Ctx) -> list[Finding]:
    fix = train_fix(ctx)
    return [attempt("XTuner checkpoints in work/", lambda: trained(ctx), fix),
            attempt("training loss falls", lambda: loss_falls(ctx), fix),
            attempt("EvaluateChatHook samples per checkpoint", lambda: chat_samples(ctx), fix)]


def lab4(ctx: Ctx) -> list[Finding]:
    from kit.labs.merge_check import merge_findings
    from kit.persona import persona_for

    fix = ctx.fix(4, f"kit merge {ctx.ws.work} --adapter-out {ctx.ws.adapter} -o {ctx.ws.merged}")
    try:
        persona = persona_for(ctx.character)
    except KitError as e:
        return [Finding("persona.yaml", MISSING, e.message, e.fix)]
    record = ctx.ws.merged / "kit_merge.json"
    if record.is_file():
        character = attempt(f"merged model is {ctx.character}'s", lambda: merged_for(ctx, record, fix), fix)
        if character.status != OK:
            return [character]
    return merge_findings(ctx.ws, persona, fix)


def merged_for(ctx: Ctx, record: Path, fix: str) -> str:
    made_for(ctx, record, json.loads(record.read_text(encoding="utf-8")), fix)
    return str(record)


def quantized(ctx: Ctx) -> Finding:
    import torch

    out = ctx.ws.quantized
    if (out / "kit_quant.json").is_file():
        return Finding("W4A16 model", OK, str(out))
    if not torch.cuda.is_available():
        return Finding("W4A16 model", INFO, "skipped: LMDeploy's AWQ needs a GPU (30% A100 slice)")
    return Finding("W4A16 model", MISSING, f"{out} has no kit_quant.json",
                   ctx.fix(5, f"kit quantize {ctx.ws.merged} --w4a16"))


def lab5(ctx: Ctx) -> list[Finding]:
    from kit.labs.serving import ask_servers

    models = {"base": ctx.ws.base, "tuned": ctx.ws.merged}
    serve = ctx.fix(4, f"kit merge … (lab 4) so that {models['tuned']} exists, then kit lab check 5")

    def answers() -> str:
        for path in models.values():
            need(path / "config.json", serve)
        return ask_servers(models, ctx.character)

    return [attempt("servers answer the openai client (base + tuned, plain + stream, persona default)",
                    answers, serve), quantized(ctx)]


def eval_fix(ctx: Ctx) -> str:
    return ctx.fix(6, f"kit eval --base {ctx.ws.base} --tuned {ctx.ws.merged} --character {ctx.character} "
                      f"--eval-file {ctx.ws.eval_file} --out {ctx.ws.eval}")


def made_for(ctx: Ctx, path: Path, record: dict, fix: str) -> None:
    """An artifact of another character passes nothing: lab 7 must not pass on 八戒's report or model."""
    if record.get("character") != ctx.character:
        raise Missing(f"{path} is for {record.get('character')!r}, not {ctx.character!r}", fix)


def report_metrics(ctx: Ctx) -> dict:
    path = need(ctx.ws.report, eval_fix(ctx))
    report = json.loads(path.read_text(encoding="utf-8"))
    made_for(ctx, path, report, eval_fix(ctx))
    metrics = report.get("metrics") or {}
    lacking = [name for name, entry in metrics.items() if not {"base", "tuned"} <= set(entry)]
    if not metrics or lacking:
        raise Missing(f"{path}: metrics without base and tuned entries: {lacking or 'all'}", eval_fix(ctx))
    return metrics


def report_has_both(ctx: Ctx) -> str:
    metrics = report_metrics(ctx)
    shown = [f"{name} {_num(m['base'])}→{_num(m['tuned'])}" for name, m in metrics.items()]
    return "; ".join(shown)


def persona_took(ctx: Ctx) -> str:
    ppl = report_metrics(ctx).get("heldout_perplexity") or {}
    base, tuned = ppl.get("base"), ppl.get("tuned")
    if base is None or tuned is None:
        raise Missing("report.json has no held-out perplexity for both models", eval_fix(ctx))
    if not tuned < base:
        raise Missing(f"held-out perplexity did not fall: base {base:.2f}, tuned {tuned:.2f}",
                      "the persona did not take: train longer or on more data (labs 2–3), then merge and eval again")
    return f"held-out perplexity {base:.2f} → {tuned:.2f}"


def charts(ctx: Ctx) -> str:
    pngs = sorted(p.name for p in ctx.ws.eval.glob("*.png"))
    if not pngs:
        raise Missing(f"no PNG chart in {ctx.ws.eval}", eval_fix(ctx))
    return ", ".join(pngs)


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)


def lab6(ctx: Ctx) -> list[Finding]:
    fix = eval_fix(ctx)
    return [attempt("eval/report.json has base and tuned for every metric", lambda: report_has_both(ctx), fix),
            attempt("tuned speaks more like the character (held-out perplexity)", lambda: persona_took(ctx), fix),
            attempt("report charts", lambda: charts(ctx), fix)]


def own_recipe(ctx: Ctx) -> str:
    from kit.paths import recipes_dir
    from kit.train.preflight import load_recipe, recipe_facts

    path = recipes_dir() / f"{ctx.character}.py"
    fix = ctx.fix(7, f"kit recipe new {ctx.character}")
    facts = recipe_facts(load_recipe(need(path, fix), {}))
    if facts.persona_file is None or facts.persona_file.parent.name != ctx.character:
        raise Missing(f"{path}: its chat hook reads {facts.persona_file}, not datasets/{ctx.character}/persona.yaml", fix)
    return f"{path.name} parses; {facts.setup.method}, persona from {facts.persona_file}"


def own_persona(ctx: Ctx) -> str:
    from kit.persona import persona_for

    if ctx.character == COURSE_CHARACTER:
        raise Missing("lab 7 is about your own character, and bajie is the course's",
                      "kit lab check 7 --character NAME --workdir DIR (see kit lab show 7)")
    persona = persona_for(ctx.character)
    return f"{persona.name}: {len(persona.probe_questions)} probe questions, {len(persona.style_markers)} style markers"


def lab7(ctx: Ctx) -> list[Finding]:
    persona_fix = ctx.fix(7, f"mkdir -p datasets/{ctx.character} && cp datasets/bajie/persona.yaml "
                             f"datasets/{ctx.character}/ and edit it")
    findings = [attempt("your character's persona.yaml", lambda: own_persona(ctx), persona_fix),
                attempt("your character's recipe", lambda: own_recipe(ctx), ctx.fix(7, f"kit recipe new {ctx.character}"))]
    if findings[0].status != OK:  # without the character, the stages below have nothing to check
        return findings
    for n in (2, 3, 4, 5, 6):  # the course's stages, now for this character
        findings += [Finding(f"lab {n}: {f.what}", f.status, f.detail, f.fix) for f in LABS[n](ctx)]
    return findings


LABS = {0: lab0, 1: lab1, 2: lab2, 3: lab3, 4: lab4, 5: lab5, 6: lab6, 7: lab7}


def run_lab_check(n: int, workdir: Path, character: str) -> list[Finding]:
    return LABS[n](Ctx(Path(workdir), character))
