"""LMDeploy's api_server, as kit starts it: the persona's chat template, a KV-cache share sized for the
GPU (slice) that base and tuned share, a LoRA adapter served as a second model name, loopback by default.

kit never imports lmdeploy (it lives in its own environment, docs/environment.md): it builds command
lines for that interpreter. Everything here is pure, so it is unit-tested on CPU.
"""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kit import atomic, chat_format
from kit.errors import KitError
from kit.persona import Persona
from kit.serve import tether

KV_POLICY = {"int8": 8, "int4": 4}  # LMDeploy's --quant-policy values for KV-cache quantization
RESERVE_MIB = 1536  # per server: CUDA context, activations, sampling buffers
# LMDeploy's PyTorch engine adds LoRA to its own linear layers only: InternLM2's `output` head and the
# embeddings have no slot (0.18 on an H200: `KeyError: 'output.lora_A'` kills the engine at start).
NO_LORA_SLOT = ("output", "tok_embeddings")


def chat_template_config(persona: Persona) -> dict:
    """InternLM2-Chat's ChatML turns with the persona as the default system prompt.

    Passed explicitly because LMDeploy <0.10 picks a template by matching the model *path* (a folder
    named merged/ gets none) and otherwise injects its own InternLM identity prompt.
    """
    return chat_format.lmdeploy_chat_template(f"kit-{persona.character}", persona.system_prompt)


def write_chat_template(persona: Persona, path: Path) -> Path:
    atomic.write_text(path, json.dumps(chat_template_config(persona), ensure_ascii=False, indent=2))
    return path


def weight_mib(model: Path) -> float:
    """Weights as loaded on the GPU: file sizes, halved for fp32 checkpoints (LMDeploy runs fp16/bf16).
    An adapter folder (no config.json) counts as it is on disk."""
    model = Path(model)
    files = [p for p in model.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file()]
    size = sum(p.stat().st_size for p in files) / 2**20
    config = model / "config.json"
    fp32 = config.is_file() and json.loads(config.read_text(encoding="utf-8")).get("torch_dtype") == "float32"
    return size / 2 if fp32 else size


def lora_blocker(target_modules) -> str | None:
    """Why LMDeploy cannot serve a LoRA adapter with these target modules, or None when it can."""
    targets = [target_modules] if isinstance(target_modules, str) else list(target_modules or [])
    blocked = sorted(t for t in targets if t in NO_LORA_SLOT)
    if not blocked:
        return None
    return f"its LoRA targets {' and '.join(blocked)}, for which LMDeploy has no LoRA slot"


def adapter_blocker(adapter: Path) -> str | None:
    """lora_blocker for a PEFT adapter folder, read from its adapter_config.json."""
    config = json.loads((Path(adapter) / "adapter_config.json").read_text(encoding="utf-8"))
    return lora_blocker(config.get("target_modules"))


def is_awq(model: Path) -> bool:
    config = json.loads((Path(model) / "config.json").read_text(encoding="utf-8"))
    return (config.get("quantization_config") or {}).get("quant_method") == "awq"


def cache_fractions(free_mib: float, weights_mib: list[float], reserve_mib: float = RESERVE_MIB,
                    limit_mib: float | None = None) -> list[float]:
    """--cache-max-entry-count for servers started one after another on one GPU.

    LMDeploy gives the KV cache that fraction of the memory free *on the device* after its own weights
    load, so a first server left at the default 0.8 starves the second. Each server gets the same KV
    budget, room is kept for the later servers' weights and workspace, and all of it stays within
    `limit_mib` (the slice of a shared card that --gpu-fraction allows; seen on an H100: fractions taken
    of the slice instead of the device's free memory filled 66 of 80 GB for a 30% slice).
    """
    usable = free_mib if limit_mib is None else min(free_mib, limit_mib)
    budget = (usable - sum(weights_mib) - reserve_mib * len(weights_mib)) / len(weights_mib)
    if budget < 256:
        need = sum(weights_mib) + (reserve_mib + 256) * len(weights_mib)
        raise KitError(f"the GPU (slice) has {usable:.0f} MiB free; {len(weights_mib)} server(s) need about "
                       f"{need:.0f} MiB (weights {sum(weights_mib):.0f} MiB + KV cache + workspace)",
                       "quantize with `kit quantize --w4a16`, serve one model (--tuned only), "
                       "or give a larger --gpu-fraction")
    fractions, free = [], free_mib
    for w in weights_mib:
        free -= w
        fractions.append(round(min(0.9, budget / free), 3))
        free -= budget + reserve_mib
    return fractions


@dataclass(frozen=True)
class ApiServer:
    name: str  # the model name clients ask for ("base", "tuned")
    model: Path
    port: int
    cache_fraction: float
    backend: str = "pytorch"
    kv: str | None = None  # "int8" | "int4"
    session_len: int | None = None
    adapters: tuple[tuple[str, Path], ...] = ()  # (model name, PEFT adapter folder) served beside `name`
    eager: bool = False  # the PyTorch engine without CUDA graphs: no capture at start, slower decoding


def api_server_command(python: Path, server: ApiServer, chat_template: Path, host: str = "127.0.0.1",
                       api_key_env: str | None = None) -> list[str]:
    """`lmdeploy serve api_server`, tethered to `kit serve`; the API key goes from $api_key_env to
    LMDeploy's `--api-keys` inside the child, never onto a command line that `ps` shows."""
    # --adapters takes every value up to the next flag (nargs="*"), so a flag follows it
    adapters = ["--adapters", *(f"{name}={path}" for name, path in server.adapters)] if server.adapters else []
    args = ["serve", "api_server", str(server.model), "--model-name", server.name, *adapters,
            "--backend", server.backend, "--chat-template", str(chat_template),
            "--cache-max-entry-count", str(server.cache_fraction), "--server-name", host,
            "--server-port", str(server.port), "--trust-remote-code",
            # INFO shows where a start spends its time (model load, KV cache, graph capture)
            "--log-level", os.environ.get("KIT_LMDEPLOY_LOG_LEVEL", "WARNING")]
    if server.eager and server.backend == "pytorch":
        args += ["--eager-mode"]
    if server.kv:
        args += ["--quant-policy", str(KV_POLICY[server.kv])]
    if is_awq(server.model):
        args += ["--model-format", "awq"]
    if server.session_len:
        args += ["--session-len", str(server.session_len)]
    # --api-keys takes every value after it (nargs="*"), so the tether appends it last.
    return tether.command(python, "lmdeploy", args, {"--api-keys": api_key_env} if api_key_env else None)


def pick_backend(python: Path, model: Path) -> str:
    """TurboMind where LMDeploy says it runs for this model, the PyTorch engine otherwise."""
    probe = "import sys; from lmdeploy.archs import autoget_backend; print(autoget_backend(sys.argv[1], True))"
    try:
        out = subprocess.run([str(python), "-c", probe, str(model)], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return "pytorch"
    lines = out.stdout.strip().splitlines()
    return "turbomind" if out.returncode == 0 and lines and lines[-1] == "turbomind" else "pytorch"


def nvidia_smi_memory_mib() -> tuple[float, float] | None:
    """(free, total) MiB of the first GPU CUDA sees, from nvidia-smi (0.1 s against the 3-6 s of
    importing torch), or None where nvidia-smi cannot say (absent, failing, or devices named by UUID)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    index = visible.split(",")[0].strip() if visible is not None else "0"
    if not index.isdigit() or not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "-i", index, "--query-gpu=memory.free,memory.total",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30)
        free, total = map(float, out.stdout.strip().splitlines()[0].split(","))
    except (OSError, subprocess.TimeoutExpired, IndexError, ValueError):
        return None
    return (free, total) if out.returncode == 0 else None


def gpu_memory_mib() -> tuple[float, float]:
    """(free, total) memory of GPU 0: nvidia-smi's, else asked from a child process (a CUDA context
    made in `kit serve` itself would hold ~0.5 GB of the card for the whole session, seen on an H100)."""
    found = nvidia_smi_memory_mib()
    if found is not None:
        return found
    probe = "import torch; print(*torch.cuda.mem_get_info(0))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise KitError("could not read the GPU's free memory", out.stderr.strip()[-300:] or "check `nvidia-smi`")
    free, total = map(int, out.stdout.split()[-2:])
    return free / 2**20, total / 2**20
