"""LMDeploy's api_server, as kit starts it: the persona's chat template, a KV-cache share sized for the
GPU (slice) that base and tuned share, loopback by default.

kit never imports lmdeploy (it lives in its own environment, docs/environment.md): it builds command
lines for that interpreter. Everything here is pure, so it is unit-tested on CPU.
"""

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kit import atomic, chat_format
from kit.errors import KitError
from kit.persona import Persona
from kit.serve import tether

KV_POLICY = {"int8": 8, "int4": 4}  # LMDeploy's --quant-policy values for KV-cache quantization
RESERVE_MIB = 1536  # per server: CUDA context, activations, sampling buffers


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
    """Weights as loaded on the GPU: file sizes, halved for fp32 checkpoints (LMDeploy runs fp16/bf16)."""
    model = Path(model)
    files = [p for p in model.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file()]
    size = sum(p.stat().st_size for p in files) / 2**20
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    return size / 2 if config.get("torch_dtype") == "float32" else size


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


def api_server_command(python: Path, server: ApiServer, chat_template: Path, host: str = "127.0.0.1",
                       api_key_env: str | None = None) -> list[str]:
    """`lmdeploy serve api_server`, tethered to `kit serve`; the API key goes from $api_key_env to
    LMDeploy's `--api-keys` inside the child, never onto a command line that `ps` shows."""
    args = ["serve", "api_server", str(server.model),
            "--backend", server.backend, "--model-name", server.name, "--chat-template", str(chat_template),
            "--cache-max-entry-count", str(server.cache_fraction), "--server-name", host,
            "--server-port", str(server.port), "--trust-remote-code", "--log-level", "WARNING"]
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


def gpu_memory_mib() -> tuple[float, float]:
    """(free, total) memory of GPU 0."""
    import torch

    free, total = torch.cuda.mem_get_info(0)
    return free / 2**20, total / 2**20
