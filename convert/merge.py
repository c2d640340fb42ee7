"""Checkpoint -> HF adapter -> merged model, verified.

merge_run is the whole of `kit merge`: both outputs are built in scratch folders beside their final
places and swapped in only when every check passed, so a failure at any step (a corrupt checkpoint,
a mismatched base, a full disk, a failed check) leaves no half-written model and keeps the old one.
"""

import gc
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from kit import atomic, chat_format
from kit.convert import adapter as adapter_mod
from kit.convert import card, locate, template, verify
from kit.errors import KitError
from kit.persona import load_persona, persona_for

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
DTYPE_OPTION = {name: option for option, name in DTYPES.items()}
# Merging and checking hold the model in fp32 (see _merge_weights) and take about this many times its
# fp32 size in (GPU) memory.
MEMORY_FACTOR = 1.5


@dataclass
class Merge:
    """What one merge used and measured; the model card and kit_merge.json are written from it."""

    work_dir: Path
    checkpoint: Path
    config: Path
    base: Path
    dtype: str
    device: str
    persona: object
    data_dir: Path | None
    lora: dict = field(default_factory=dict)
    checks: dict = field(default_factory=dict)


def _persona(cfg, character: str | None):
    if character:
        return persona_for(character)
    persona_file = cfg.get("persona_file")
    if persona_file and Path(persona_file).is_file():
        return load_persona(persona_file)
    if cfg.get("character"):
        return persona_for(cfg.character)
    raise KitError("the run's config names no character",
                   "pass --character NAME (a folder under datasets/ with persona.yaml)")


def _data_dir(cfg) -> Path | None:
    """The folder of the run's training data (its card.json goes into the model card)."""
    if cfg.get("data_dir"):
        return Path(cfg.data_dir)
    files = cfg.get("data_files")
    files = [files] if isinstance(files, str) else files or []
    return Path(files[0]).parent if files else None


def _dtype(base: Path, requested: str | None) -> str:
    if requested is None:  # the base's own dtype: InternLM2-Chat-1.8B ships bf16, the tiny model fp32
        stored = json.loads((base / "config.json").read_text(encoding="utf-8")).get("torch_dtype")
        return stored if stored in DTYPES.values() else "float32"
    if requested not in DTYPES:
        raise KitError(f"unknown --dtype {requested}", f"use one of {', '.join(DTYPES)}")
    return DTYPES[requested]


def _device(requested: str, base: Path, console: Console) -> str:
    import torch

    if requested != "auto":
        if requested == "cuda" and not torch.cuda.is_available():
            raise KitError("--device cuda but torch sees no GPU", "use --device cpu (or auto)")
        return requested
    if not torch.cuda.is_available():
        return "cpu"
    stored = sum(p.stat().st_size for p in base.glob("*.safetensors")) or \
        sum(p.stat().st_size for p in base.glob("*.bin"))
    need = MEMORY_FACTOR * stored * 4 / getattr(torch, _dtype(base, None)).itemsize
    free = torch.cuda.mem_get_info()[0]
    if free < need:
        console.print(f"  GPU has {free / 2**30:.1f} GiB free, the merge needs ~{need / 2**30:.1f}: "
                      "merging on CPU")
        return "cpu"
    return "cuda"


def _check_base(base: Path) -> None:
    if not (base / "config.json").is_file():
        raise KitError(f"base model {base} has no config.json",
                       "pass the Hugging Face folder of the model the run trained on with --base")


def _check_same_base(trained_on: str, base: Path, allow_mismatch: bool, console: Console) -> None:
    """--base must be the model the run trained on: same shape, and the same weights where both are here."""
    folder = adapter_mod.trained_base(trained_on)
    if folder is None:
        console.print(f"  [yellow]cannot check --base {base} against {trained_on}, the base the run "
                      "trained on: it is not on this machine[/]")
        return
    if folder.resolve() == base:
        return
    adapter_mod.check_base_matches(trained_on, base)
    differs = adapter_mod.weights_differ(folder, base)
    if differs is None:
        return
    problem = (f"base {base} has the shape of {trained_on}, the base the run trained on, but other "
               f"weights ({differs} differs)")
    if not allow_mismatch:
        raise KitError(problem, f"merge into {trained_on} (leave out --base); if {base} is that model "
                       "saved in another dtype, add --allow-base-mismatch")
    console.print(f"  [bold red]warning: {problem}; merging anyway (--allow-base-mismatch): the "
                  "result is not the model you trained unless the two differ only in dtype[/]")


def _check_targets(m: Merge, adapter_out: Path, merged_out: Path, force: bool) -> None:
    """Neither output may replace an input or the other output, nor a folder kit did not write."""
    sources = [m.work_dir, m.base, m.checkpoint, m.config, *filter(None, [m.persona.path, m.data_dir])]
    atomic.check_target(adapter_out, record=card.ADAPTER_RECORD, force=force, option="--adapter-out",
                        protected=[*sources, merged_out])
    atomic.check_target(merged_out, record=card.MERGE_RECORD, force=force, option="--out",
                        protected=[*sources, adapter_out])


def _merge_weights(m: Merge, adapter_dir: Path, out: Path) -> dict:
    """Merge the adapter into the base and save it; return the probes and their PEFT logits."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = getattr(torch, m.dtype)
    tokenizer = AutoTokenizer.from_pretrained(m.base, trust_remote_code=True)
    tokenizer.chat_template = chat_format.persona_chat_template(m.persona.system_prompt)
    prompts = verify.probe_prompts(tokenizer, m.persona)
    # Reference and merge run in fp32 (a half-precision base upcasts exactly), so the logit check sees
    # the merge and not the forward passes' own rounding: in bf16 that alone moved the random
    # 1.8B-shaped model's logits by 3 % of the largest, 25 % after a DeepSpeed run (H100). The merged
    # weights W + BA are rounded to the model's dtype once, as PEFT's in-place merge would.
    model = AutoModelForCausalLM.from_pretrained(m.base, torch_dtype=torch.float32, trust_remote_code=True,
                                                 low_cpu_mem_usage=True).to(m.device)
    peft_model = PeftModel.from_pretrained(model, adapter_dir)
    peft_model.eval()
    reference, effect = verify.adapter_logits(peft_model, prompts)
    merged = peft_model.merge_and_unload().to(dtype)
    merged.save_pretrained(out, safe_serialization=True, max_shard_size="2GB")
    tokenizer.save_pretrained(out)
    # InternLM2-Chat ends a turn with <|im_end|>: stop on it as well as on </s>.
    generation = merged.generation_config
    generation.eos_token_id = chat_format.stop_ids(tokenizer, generation)
    generation.save_pretrained(out)
    # save_pretrained copies the remote code it imported; copy the rest (e.g. the tokenizer's) too.
    for code in m.base.glob("*.py"):
        if not (out / code.name).exists():
            shutil.copy(code, out / code.name)
    del model, peft_model, merged
    gc.collect()
    return {"prompts": prompts, "reference": reference, "adapter_effect": effect}


def _verify(m: Merge, out: Path, probes: dict, console: Console) -> None:
    """Load the merged folder as a user would (plain transformers) and check it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # In fp32, like the reference: the saved half-precision weights upcast exactly.
    model = AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float32, trust_remote_code=True,
                                                 low_cpu_mem_usage=True).to(m.device).eval()
    tokenizer = AutoTokenizer.from_pretrained(out, trust_remote_code=True)
    m.checks["logits"] = verify.check_logits(verify.logits(model, probes["prompts"]), probes["reference"],
                                             getattr(torch, m.dtype), probes["adapter_effect"])
    m.checks["logits"]["adapter_effect"] = probes["adapter_effect"]
    if probes["adapter_effect"] <= m.checks["logits"]["tolerance"]:
        console.print("  [yellow]the adapter barely changes the base's logits: was it trained long "
                      "enough? (the logit check cannot tell merged from base here)[/]")
    m.checks["template_conversations"] = template.check_template(tokenizer, m.persona)
    question = m.persona.probe_questions[0]
    m.checks["generation"] = {"question": question,
                              "answer": verify.generate(model, tokenizer, question)}
    del model
    gc.collect()


def _build(m: Merge, adapter_out: Path, merged_out: Path, console: Console) -> None:
    """Adapter, merged model, checks and cards in scratch folders, swapped in only if all passed."""
    with atomic.staged_dir(adapter_out) as a_stage, atomic.staged_dir(merged_out) as m_stage:
        console.print("  · adapter: XTuner pth_to_hf")
        m.lora = adapter_mod.export_adapter(m.config, m.checkpoint, m.base, a_stage)
        console.print("  · merge: base + adapter, tokenizer with the persona chat template")
        probes = _merge_weights(m, a_stage, m_stage)
        console.print("  · verify: logits vs PEFT, chat template vs XTuner, a generation")
        _verify(m, m_stage, probes, console)
        card.write(m, m_stage, adapter_out=adapter_out, merged_out=merged_out)
        card.write_adapter_card(m, a_stage, adapter_out, merged_out)


def merge_run(work_dir: Path, base: Path | None, adapter_out: Path, merged_out: Path, *,
              checkpoint: str | Path | None = None, dtype: str | None = None, device: str = "auto",
              character: str | None = None, force: bool = False, allow_base_mismatch: bool = False,
              console: Console | None = None) -> Path:
    """Convert the newest (or chosen) checkpoint of work_dir, merge it into base; return merged_out.

    base None means the base the run trained on (the config's pretrained_model_name_or_path).
    force replaces output folders kit did not write; allow_base_mismatch merges into a base with
    other weights than the one trained on (with a warning).
    """
    console = console or Console()
    work_dir, adapter_out, merged_out = Path(work_dir), Path(adapter_out), Path(merged_out)
    ckpt = locate.find_checkpoint(work_dir, checkpoint)
    config = locate.find_config(work_dir)
    cfg = adapter_mod.load_config(config)
    trained_on = str(cfg.model.llm.get("pretrained_model_name_or_path", ""))
    base = Path(base or trained_on).resolve()
    _check_base(base)
    if base != Path(trained_on).resolve():
        _check_same_base(trained_on, base, allow_base_mismatch, console)
    m = Merge(work_dir=work_dir, checkpoint=ckpt, config=config, base=base,
              dtype=_dtype(base, dtype), device=_device(device, base, console),
              persona=_persona(cfg, character), data_dir=_data_dir(cfg))
    _check_targets(m, adapter_out, merged_out, force)
    freed = atomic.clean_stale(adapter_out) + atomic.clean_stale(merged_out)
    if freed:
        console.print(f"  removed what an interrupted merge left beside {merged_out.parent}: "
                      f"{freed / 2**20:,.1f} MiB freed")
    console.print(f"  run {work_dir} · checkpoint {ckpt.name} · base {base} · "
                  f"{m.dtype} on {m.device} · persona {m.persona.name}")
    start = time.monotonic()
    try:
        try:
            _build(m, adapter_out, merged_out, console)
        except verify.RoundingLoss as e:
            if dtype is not None:  # the user chose the dtype: say what it costs, keep nothing
                raise
            console.print(f"  [yellow]{e.message}: merging in float32 instead, which keeps them "
                          f"(twice the size; --dtype {DTYPE_OPTION[m.dtype]} insists)[/]")
            m.dtype, m.checks = "float32", {}
            _build(m, adapter_out, merged_out, console)
    except OSError as e:
        raise KitError(f"merge stopped on a file error, nothing was kept: {e}",
                       "check free disk space and write permission of "
                       f"{merged_out.parent}") from e
    logit = m.checks["logits"]
    console.print(f"  logits: max |merged − (base+adapter)| = {logit['max_abs_diff']:.2e} "
                  f"(allowed {logit['tolerance']:.1e}; the adapter itself moves them by "
                  f"{logit['adapter_effect']:.2e})")
    console.print(f"  chat template = XTuner internlm2_chat on {m.checks['template_conversations']} "
                  f"conversations · {time.monotonic() - start:.1f}s")
    console.print(f"  sample: {m.checks['generation']['question']} → "
                  f"{m.checks['generation']['answer']!r}")
    if m.device == "cuda":
        import torch

        console.print(f"  peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:,.0f} MiB")
    return merged_out
