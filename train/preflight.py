"""Before a run: the recipe parses, its data is valid, and the run fits the GPU or slice."""

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kit.errors import KitError
from kit.train.memory_plan import (INTERNLM2_1_8B, Plan, Setup, budget_mib, plan_memory, render,
                                   shape_from_config)

MAX_PROBLEMS_SHOWN = 10


@contextmanager
def environment(env: dict[str, str]):
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load_recipe(recipe: Path, env: dict[str, str]):
    """The recipe as mmengine (and so `xtuner train`) parses it, under the run's environment."""
    from mmengine.config import Config

    if not recipe.is_file():
        raise KitError(f"recipe not found: {recipe}", "pass a file under recipes/, e.g. recipes/bajie.py, "
                       "or make one with `kit recipe new CHARACTER`")
    try:
        with environment(env):
            return Config.fromfile(str(recipe))
    except Exception as e:  # mmengine raises anything the recipe's own code raises
        raise KitError(f"{recipe}: XTuner cannot parse this recipe: {type(e).__name__}: {e}",
                       "fix the line named above; `python -c \"from mmengine.config import Config; "
                       f"Config.fromfile('{recipe}')\"` shows the full traceback") from None


@dataclass(frozen=True)
class RecipeFacts:
    base_model: str
    data_files: list[Path]
    persona_file: Path | None
    setup: Setup


def torch_dtype_bytes(dtype) -> int:
    """Bytes per element of the recipe's torch_dtype (a torch.dtype, or a name such as 'float16')."""
    import torch

    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, torch.float16)
    return dtype.itemsize if isinstance(dtype, torch.dtype) else 2


def recipe_facts(cfg) -> RecipeFacts:
    llm = cfg.model.llm
    lora = cfg.model.get("lora")
    method = "full" if not lora else ("qlora" if llm.get("quantization_config") else "lora")
    hook = next((h for h in cfg.get("custom_hooks", []) if "persona_file" in h), None)
    return RecipeFacts(
        base_model=str(llm.pretrained_model_name_or_path),
        data_files=[Path(p) for p in cfg.train_dataset.dataset.get("data_files", [])],
        persona_file=Path(hook["persona_file"]) if hook else None,
        setup=Setup(method, seq_len=int(cfg.get("max_length", 2048)),
                    batch=int(cfg.train_dataloader.batch_size), lora_r=int(lora.r) if lora else 0,
                    fast=getattr(cfg.model.type, "__name__", str(cfg.model.type)).startswith("Fast"),
                    ce_chunk=int(cfg.model.get("ce_chunk", 1024)),
                    load_bytes=torch_dtype_bytes(llm.get("torch_dtype"))),
    )


def _hub_id(name: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def check_base(facts: RecipeFacts) -> None:
    """A base that is a path must be a model folder now, not 70 s later inside transformers."""
    base = Path(facts.base_model)
    if (base / "config.json").is_file() or (not base.exists() and _hub_id(facts.base_model)):
        return
    problem = "is not a model folder (no config.json)" if base.exists() else "does not exist"
    raise KitError(f"base model {base} (the recipe's pretrained_model_name_or_path: --base or "
                   f"KIT_BASE_MODEL) {problem}",
                   "pass --base a Hugging Face model folder (config.json, weights, tokenizer), e.g. "
                   "/models/internlm2-chat-1_8b, or a hub id such as internlm/internlm2-chat-1_8b; "
                   "on CPU `kit demo` builds a tiny one in DIR/base")


def check_data(facts: RecipeFacts) -> int:
    """`kit data check` on every training file of the recipe; returns the number of samples."""
    from kit.data.check import check_file
    from kit.persona import load_persona

    system = load_persona(facts.persona_file).system_prompt if facts.persona_file else None
    local_model = Path(facts.base_model)
    tokenizer = local_model if (local_model / "tokenizer_config.json").is_file() else None
    count = 0
    for path in facts.data_files:
        if not path.is_file():
            raise KitError(f"training data not found: {path}",
                           "run `kit data build CHARACTER`, or point KIT_DATA_DIR at a folder with "
                           "train.jsonl")
        problems = check_file(path, system=system, tokenizer=tokenizer,
                              max_length=facts.setup.seq_len)
        if problems:
            shown = "\n".join(problems[:MAX_PROBLEMS_SHOWN])
            more = len(problems) - MAX_PROBLEMS_SHOWN
            raise KitError(f"{len(problems)} problem(s) in the training data:\n{shown}"
                           + (f"\n... and {more} more" if more > 0 else ""),
                           f"fix them, or run `kit data check {path}` for the full list")
        count += sum(1 for line in path.open(encoding="utf-8") if line.strip())
    return count


def memory_plan(facts: RecipeFacts) -> Plan | None:
    local = Path(facts.base_model) / "config.json"
    if local.is_file():
        shape = shape_from_config(local)
    elif "internlm2-chat-1_8b" in facts.base_model or "internlm2-1_8b" in facts.base_model:
        shape = INTERNLM2_1_8B
    else:
        return None  # a hub model of another shape: nothing to plan from without downloading it
    return plan_memory(shape, facts.setup)


def check_fit(plan: Plan | None, gpu_fraction: float | None, gpu_total_mib: float | None,
              gpu_memory_mib: float | None = None) -> str:
    """The plan as text; raises KitError when the run will not fit the GPU or its slice."""
    if plan is None:
        return "  (no plan: the base model is neither a local folder nor InternLM2-1.8B)"
    budget = budget_mib(gpu_fraction, gpu_total_mib, gpu_memory_mib)
    text = render(plan, budget)
    if budget is not None and not plan.fits(budget):
        where = ("the --gpu-memory cap" if gpu_memory_mib else
                 f"{gpu_fraction:.0%} of the GPU" if gpu_fraction else "this GPU")
        raise KitError(f"the run will not fit {where} ({budget:,.0f} MiB):\n{text}",
                       "use QLoRA (the recipe's quantize_4bit), lower max_length, or give it a larger "
                       "slice (--gpu-memory / --gpu-fraction)")
    return text
