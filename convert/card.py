"""The merged model's card (README.md) and kit_merge.json: where it came from, how to use it."""

import json
import shlex
from datetime import datetime, timezone
from pathlib import Path

from kit import atomic
from kit.artifacts import persona_record
from kit.serve.lmdeploy_cmd import lora_blocker

LORA_FIELDS = ("r", "lora_alpha", "lora_dropout", "target_modules", "bias")
# What makes a folder kit's own: `kit merge` replaces a folder holding its record, and no other.
MERGE_RECORD = "kit_merge.json"
ADAPTER_RECORD = "kit_adapter.json"


def _data_summary(data_dir: Path | None) -> list[str]:
    """card.json of the training data (written by `kit data build`): its scalar fields, one level deep."""
    path = data_dir / "card.json" if data_dir else None
    if not path or not path.is_file():
        return [f"- no data card found{f' at {path}' if path else ''}"]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [f"- data card {path} is unreadable"]
    lines = [f"- card: `{path}`"]
    for key, value in data.items() if isinstance(data, dict) else ():
        if isinstance(value, (str, int, float, bool)):
            lines.append(f"- {key}: {value}")
        elif isinstance(value, dict):
            flat = {k: v for k, v in value.items() if isinstance(v, (str, int, float, bool))}
            if flat:
                lines.append(f"- {key}: " + ", ".join(f"{k} {v}" for k, v in flat.items()))
    return lines


def _adapter_server_lines(m, base: Path, adapter: Path) -> list[str]:
    """LMDeploy serving base + adapter without merging, only where LMDeploy can load the adapter."""
    blocker = lora_blocker(m.lora.get("target_modules"))
    if blocker:
        return [f"# base + adapter in one LMDeploy server: not possible, {blocker}"]
    return ["# base + adapter without merging",
            f"lmdeploy serve api_server {base} --adapters {m.persona.character}={adapter} "
            "--backend pytorch --server-name 127.0.0.1"]


def render(m, adapter_out: Path, merged_out: Path) -> str:
    persona, logits = m.persona, m.checks["logits"]
    lora = {k: m.lora.get(k) for k in LORA_FIELDS}
    targets = lora["target_modules"]
    if isinstance(targets, list):
        lora["target_modules"] = ", ".join(sorted(targets))
    system = shlex.quote(persona.system_prompt)
    merged, adapter, base = merged_out.resolve(), adapter_out.resolve(), m.base
    return "\n".join([
        f"# {persona.name} · {base.name} + LoRA",
        "",
        f"A role-play model that speaks as **{persona.name}**: the LoRA adapter of an XTuner run "
        f"merged into its base by `kit merge` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "Its chat template puts the persona's system prompt in by default, so transformers, "
        "LMDeploy (`hf` template) and the compare UI need no system prompt.",
        "",
        "## Provenance",
        f"- base: `{base}`",
        f"- recipe: `{m.config.name}` (run `{m.work_dir.resolve()}`)",
        f"- checkpoint: `{m.checkpoint.name}`",
        f"- dtype: {m.dtype} (merged on {m.device})",
        f"- persona: `{persona.path}`",
        "",
        "## LoRA",
        *(f"- {k}: {v}" for k, v in lora.items()),
        "",
        "## Training data",
        *_data_summary(m.data_dir),
        "",
        "## Verified at merge time",
        f"- logits equal base + adapter (PEFT) on {len(persona.probe_questions[:3])} probe prompts: "
        f"max |Δ| {logits['max_abs_diff']:.2e} ≤ {logits['tolerance']:.1e} "
        f"(the adapter itself moves them by {logits['adapter_effect']:.2e})",
        f"- chat template = XTuner `internlm2_chat` token for token on "
        f"{m.checks['template_conversations']} conversations (persona default, multi-turn, "
        "explicit system, generation prompt)",
        f"- generation: {m.checks['generation']['question']} → {m.checks['generation']['answer']!r}",
        "",
        "## Use",
        "```bash",
        "# compare with the base in the browser",
        f"kit serve --base {base} --tuned {merged}",
        "# LMDeploy on a GPU (its own environment: make lmdeploy-env)",
        f"lmdeploy chat {merged} --backend pytorch",
        f"lmdeploy serve api_server {merged} --backend pytorch --server-name 127.0.0.1",
        *_adapter_server_lines(m, base, adapter),
        "# xtuner chat reads no chat template: give it the persona",
        f"xtuner chat {merged} --prompt-template internlm2_chat --system {system}",
        "```",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        f'tok = AutoTokenizer.from_pretrained("{merged}", trust_remote_code=True)',
        f'model = AutoModelForCausalLM.from_pretrained("{merged}", trust_remote_code=True)',
        f'ids = tok.apply_chat_template([{{"role": "user", "content": '
        f'"{persona.probe_questions[0]}"}}], add_generation_prompt=True, return_tensors="pt")',
        "print(tok.decode(model.generate(ids, max_new_tokens=64)[0, ids.shape[1]:], "
        "skip_special_tokens=True))",
        "```",
        "",
    ])


def write(m, out: Path, adapter_out: Path, merged_out: Path) -> None:
    atomic.write_text(out / "README.md", render(m, adapter_out, merged_out))
    record = {"base": str(m.base), "work_dir": str(m.work_dir.resolve()), "config": m.config.name,
              "checkpoint": m.checkpoint.name, "dtype": m.dtype, "device": m.device,
              **persona_record(m.persona), "adapter": str(adapter_out.resolve()),
              "lora": {k: m.lora.get(k) for k in LORA_FIELDS}, "checks": m.checks}
    atomic.write_text(out / MERGE_RECORD, json.dumps(record, ensure_ascii=False, indent=2))


def write_adapter_card(m, out: Path, adapter_out: Path, merged_out: Path) -> None:
    """README.md (replaces PEFT's empty template: what the adapter is, how to load or serve it) and
    kit_adapter.json (the same as data)."""
    adapter, base = adapter_out.resolve(), m.base
    record = {"base": str(base), "work_dir": str(m.work_dir.resolve()), "config": m.config.name,
              "checkpoint": m.checkpoint.name, **persona_record(m.persona),
              "merged": str(merged_out.resolve()), "lora": {k: m.lora.get(k) for k in LORA_FIELDS}}
    atomic.write_text(out / ADAPTER_RECORD, json.dumps(record, ensure_ascii=False, indent=2))
    atomic.write_text(out / "README.md", "\n".join([
        f"# {m.persona.name} · LoRA adapter for {base.name}",
        "",
        f"The PEFT adapter of `{m.config.name}` at `{m.checkpoint.name}` (run `{m.work_dir.resolve()}`), "
        f"written by `kit merge`; the merged model is `{merged_out.resolve()}` (its README has the checks).",
        "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM",
        f'base = AutoModelForCausalLM.from_pretrained("{base}", trust_remote_code=True)',
        f'model = PeftModel.from_pretrained(base, "{adapter}")',
        "```",
        "",
        "```bash",
        *_adapter_server_lines(m, base, adapter),
        "```",
        "",
        "The base's own chat template has no persona: send the persona's system prompt with each "
        "conversation, or use the merged model.",
        "",
    ]))
