"""The drift gate: is the model I deploy still the model I trained?

A trained model reaches users through stages: the LoRA adapter on its base (the reference: what
training made), the merged model, W4A16 weights, an engine with an int8 KV cache. Each stage is asked
the same questions greedily (the persona's probe questions and held-out contexts) and compared with
the stage before it: the share of identical replies, where differing replies part, held-out
perplexity, and the persona metrics. A stage past a threshold fails the gate, naming stage and metric.
"""

import gc
import json
import re
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kit.artifacts import persona_record
from kit.errors import KitError
from kit.eval.backends import Endpoint, is_url, open_model
from kit.eval.identity import identity_consistency
from kit.eval.samples import Sample, load_samples
from kit.eval.score import persona_answers
from kit.eval.style import style_marker_rate
from kit.persona import Persona

# A stage whose name says one of these runs quantized weights or cache, and gets the looser limits.
QUANTIZED_WORDS = ("w4a16", "awq", "gptq", "int4", "int8", "kv", "4bit", "8bit")
NAMED = re.compile(r"^([\w.-]+)=(.+)$")  # NAME=SOURCE


@dataclass(frozen=True)
class Stage:
    name: str
    source: str  # a model folder, an adapter folder or an OpenAI-compatible URL
    quantized: bool


@dataclass(frozen=True)
class Thresholds:
    """Limits one stage may drift from the stage before it. Merging changes no arithmetic that
    matters in fp32, so its limits are tight; quantization changes every matmul a little."""

    min_agreement: float = 0.9  # share of identical greedy replies
    min_agreement_quantized: float = 0.5
    max_ppl_change: float = 0.01  # relative change of held-out perplexity, either way
    max_ppl_change_quantized: float = 0.10
    max_persona_drop: float = 0.2  # fall of style-marker rate or identity consistency (0-1 shares)

    def limits(self, stage: Stage) -> tuple[float, float]:
        if stage.quantized:
            return self.min_agreement_quantized, self.max_ppl_change_quantized
        return self.min_agreement, self.max_ppl_change


def parse_stage(spec: str) -> Stage:
    """`DIR`, `URL[#MODEL]` or `NAME=DIR|URL`; the name defaults to the folder's or the model's."""
    named = NAMED.match(spec) if not is_url(spec) else None
    name, source = (named.group(1), named.group(2)) if named else (None, spec)
    if is_url(source):
        url, _, model = source.partition("#")
        name = name or model or url.split("//", 1)[1].split("/", 1)[0]
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise KitError(f"drift stage not found: {folder}",
                           "pass model or adapter folders, or served URLs (http://HOST:PORT/v1#MODEL)")
        if (folder / "kit_quant.json").is_file():
            raise KitError(f"{folder} holds LMDeploy W4A16 weights, which run only inside LMDeploy",
                           f"serve it on the GPU machine (`kit serve --tuned {folder} --no-ui`) and pass "
                           "its URL: w4a16=http://127.0.0.1:PORT/v1#tuned")
        name = name or folder.resolve().name
    return Stage(name, source, any(w in name.lower() for w in QUANTIZED_WORDS))


def parse_stages(specs: list[str]) -> list[Stage]:
    if len(specs) < 2:
        raise KitError("the drift gate compares at least two stages",
                       "kit eval --drift ADAPTER_DIR MERGED_DIR [w4a16=URL] [kv-int8=URL]")
    stages = [parse_stage(s) for s in specs]
    names = [s.name for s in stages]
    if len(set(names)) < len(names):
        raise KitError(f"two drift stages share a name ({', '.join(names)})",
                       "name them: NAME=DIR or NAME=URL, e.g. w4a16=http://127.0.0.1:23333/v1#tuned")
    return stages


def adapter_base(stage: Stage, base: str | Path | None) -> Path | None:
    """The base an adapter stage sits on: --base, else the one its kit_adapter.json records."""
    folder = Path(stage.source)
    if is_url(stage.source) or not (folder / "adapter_config.json").is_file():
        return None
    if base is None and (folder / "kit_adapter.json").is_file():
        base = json.loads((folder / "kit_adapter.json").read_text(encoding="utf-8")).get("base")
    if base is None or is_url(base):
        raise KitError(f"{folder} is a LoRA adapter and records no local base model",
                       "pass --base PATH (the model folder it was trained on)")
    return Path(base)


@dataclass(frozen=True)
class DriftSettings:
    max_new_tokens: int = 48
    gen_limit: int | None = None  # held-out contexts to answer (None: all)
    ppl_limit: int | None = None  # held-out samples for perplexity (None: all)


def observe(model, persona: Persona, samples: list[Sample], settings: DriftSettings, advance=lambda: None) -> dict:
    """One stage's greedy replies, held-out perplexity and persona metrics."""
    ppl, probe_pairs, heldout_pairs = persona_answers(model, persona, samples, settings, advance)
    probes, heldout = [r for _, r in probe_pairs], [r for _, r in heldout_pairs]
    return {"model": model.label, "perplexity": ppl.value, "perplexity_reason": ppl.reason,
            "style_marker_rate": style_marker_rate(probes + heldout, persona).rate,
            "identity_consistency": identity_consistency(probes, persona).rate,
            "replies": {"probes": probes, "heldout": heldout}}


def first_divergence(a: str, b: str, tokenize) -> int:
    """The index of the first token where two replies part (the shorter length if one extends the other)."""
    x, y = tokenize(a), tokenize(b)
    return next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))


def compare(stage: Stage, against: Stage, seen: dict, before: dict, reference: dict, limits: Thresholds,
            tokenize) -> dict:
    """`seen` (this stage) against `before` (the stage before it); the gate's checks, worst first."""
    def replies(obs):
        return obs["replies"]["probes"] + obs["replies"]["heldout"]

    pairs = list(zip(replies(before), replies(seen)))
    parted = [first_divergence(a, b, tokenize) for a, b in pairs if a != b]
    agreement = 1 - len(parted) / len(pairs)
    min_agreement, max_change = limits.limits(stage)
    checks = [{"metric": "agreement", "value": agreement, "limit": min_agreement,
               "passed": agreement >= min_agreement, "rule": f">= {min_agreement:g}"}]
    # Either way: a model that finds the held-out lines much likelier is not the model trained either.
    change = None
    if seen["perplexity"] is not None and before["perplexity"] is not None:
        change = seen["perplexity"] / before["perplexity"] - 1
        checks.append({"metric": "perplexity_change", "value": change, "limit": max_change,
                       "passed": abs(change) <= max_change, "rule": f"within ±{max_change:g}"})
    else:
        checks.append({"metric": "perplexity_change", "value": None, "limit": max_change, "passed": None,
                       "rule": "not measured: " + (seen["perplexity_reason"] or before["perplexity_reason"])})
    for metric in ("style_marker_rate", "identity_consistency"):
        drop = before[metric] - seen[metric]
        checks.append({"metric": f"{metric}_drop", "value": drop, "limit": limits.max_persona_drop,
                       "passed": drop <= limits.max_persona_drop, "rule": f"<= {limits.max_persona_drop:g}"})
    same_as_reference = [a == b for a, b in zip(replies(reference), replies(seen))]
    return {"stage": stage.name, "against": against.name, "quantized": stage.quantized, "agreement": agreement,
            "agreement_with_reference": sum(same_as_reference) / len(same_as_reference),
            "replies": len(pairs), "differing": len(parted),
            "mean_first_divergence": sum(parted) / len(parted) if parted else None,
            "perplexity_change": change, "checks": checks,
            "passed": all(c["passed"] is not False for c in checks)}


def failures(section: dict) -> list[str]:
    """One line per failed check: the stage, the metric, its value and the limit it broke."""
    return [f"{c['stage']} vs {c['against']}: {check['metric']} {check['value']:.3f} (must be {check['rule']})"
            for c in section["comparisons"] for check in c["checks"] if check["passed"] is False]


def run_drift(stages: list[Stage], base: Path | str | None, persona: Persona, eval_file: Path, out_dir: Path,
              settings: DriftSettings = DriftSettings(), limits: Thresholds = Thresholds(),
              api_key_env: str | None = None) -> Path:
    """The gate over `stages`: its section in OUT/report.json and report.md, drift.png; the report's path."""
    section = drift_section(stages, base, persona, load_samples(eval_file), settings, limits, api_key_env)
    meta = {"kit_version": version("kit"), **persona_record(persona), "persona_name": persona.name,
            "persona_file": str(persona.path)}
    return write_drift({**section, "eval_file": str(eval_file)}, meta, out_dir)


def drift_section(stages: list[Stage], base: Path | str | None, persona: Persona, samples: list[Sample],
                  settings: DriftSettings, limits: Thresholds, api_key_env: str | None) -> dict:
    """Observe every stage in order, compare each with the one before; the report's `drift` section."""
    bases = [adapter_base(s, base) for s in stages]
    for stage in stages:
        if is_url(stage.source):
            Endpoint(stage.source, api_key_env)  # a dead server stops the gate before any model loads
    answered = samples[:settings.gen_limit]
    units = len(samples[:settings.ppl_limit]) + len(persona.probe_questions) + len(answered)
    observed, tokenizer = [], None
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True)) as progress:
        for stage, stage_base in zip(stages, bases):
            task = progress.add_task(f"{stage.name:<12}", total=units)
            model = open_model(stage.source, stage_base, api_key_env)
            try:
                observed.append(observe(model, persona, samples, settings, lambda: progress.advance(task)))
                if tokenizer is None:
                    tokenizer = getattr(model, "tokenizer", None)
            finally:
                del model
                _free_memory()
    # Divergence is counted in the first local stage's tokens; in characters when every stage is a URL.
    tokenize = list if tokenizer is None else (lambda text: tokenizer(text, add_special_tokens=False).input_ids)
    comparisons = [compare(stages[i], stages[i - 1], observed[i], observed[i - 1], observed[0], limits,
                           tokenize) for i in range(1, len(stages))]
    return {"reference": stages[0].name, "divergence_unit": "tokens" if tokenizer is not None else "characters",
            "settings": {"decoding": "greedy", **asdict(settings), "probe_questions": len(persona.probe_questions),
                         "heldout_contexts": len(answered)},
            "thresholds": asdict(limits),
            "stages": [{**asdict(s), "base": str(b) if b else None, **o}
                       for s, b, o in zip(stages, bases, observed)],
            "comparisons": comparisons, "passed": all(c["passed"] for c in comparisons)}


def write_drift(section: dict, meta: dict, out_dir: Path) -> Path:
    """The section in OUT/report.json (beside the persona eval of the same character already there),
    drift.png and report.md; returns the report's path."""
    from kit.eval.charts import drift_chart
    from kit.eval.report import DRIFT_CHART, write_report

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.json"
    report = {}
    if path.is_file():
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise KitError(f"{path}: not readable JSON ({e})", "delete it, or pass another --out") from e
    if report.get("character") != meta["character"]:
        report = meta  # another character's eval is not this gate's to extend
    report["drift"] = section
    drift_chart(report, out_dir / DRIFT_CHART)
    return write_report(report, out_dir, [c for c in report.get("charts", []) if c != DRIFT_CHART] + [DRIFT_CHART])


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
