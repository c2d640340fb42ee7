"""What `kit serve` starts: one embedded server for both models on CPU; on a GPU one LMDeploy api_server
for both when the tuned model's LoRA adapter can sit on the base (its weights loaded once), else one
api_server per model."""

import sys
from dataclasses import dataclass
from pathlib import Path

from kit.errors import KitError
from kit.paths import cache_dir
from kit.persona import persona_for
from kit.serve import lmdeploy_cmd as lm
from kit.serve import tether
from kit.serve.settings import ServeSettings


@dataclass(frozen=True)
class ServerPlan:
    label: str
    names: tuple[str, ...]  # model names this server answers to
    cmd: list[str]  # holds no secret: printed, and visible in `ps`
    url: str  # OpenAI base URL, ending in /v1
    start_timeout: float
    note: str = ""  # why this plan is not the usual one, said before it starts


def cuda_available() -> bool:
    """nvidia-smi's word where it has one (kit serve starts seconds sooner without importing torch)."""
    if lm.nvidia_smi_memory_mib() is not None:
        return True
    import torch

    return torch.cuda.is_available()


def resolve_engine(engine: str) -> str:
    from kit.lmdeploy_env import lmdeploy_python, require_lmdeploy_python

    if engine not in ("auto", "lmdeploy", "transformers"):
        raise KitError(f"--engine {engine}: expected lmdeploy, transformers or auto")
    if engine == "auto":
        return "lmdeploy" if cuda_available() and lmdeploy_python() else "transformers"
    if engine == "lmdeploy" and not cuda_available():
        raise KitError("LMDeploy needs a GPU and this machine has no CUDA device",
                       "use --engine transformers (the embedded CPU server, same API)")
    if engine == "lmdeploy":
        require_lmdeploy_python()
    return engine


def plan_servers(models: dict[str, Path], s: ServeSettings, free_mib: float | None = None,
                 python: Path | None = None) -> list[ServerPlan]:
    """The servers for `models`; `s.engine` and `s.character` already resolved (not "auto", not None).

    free_mib and python stand in for the GPU's free memory and LMDeploy's interpreter (tests).
    """
    client_host = "127.0.0.1" if s.host in ("0.0.0.0", "::") else s.host
    if s.engine == "transformers":
        args = ["--host", s.host, "--port", str(s.port), "--character", s.character]
        for name, path in models.items():
            args += ["--model", f"{name}={path}"]
        if s.api_key_env:
            args += ["--api-key-env", s.api_key_env]
        cmd = tether.command(sys.executable, "kit.serve.hf_server", args)
        return [ServerPlan("embedded server", tuple(models), cmd, f"http://{client_host}:{s.port}/v1", 300)]
    return _lmdeploy_plans(models, s, client_host, free_mib, python)


def one_server_adapter(models: dict[str, Path], s: ServeSettings) -> tuple[Path | None, str]:
    """The adapter that lets one LMDeploy api_server answer as base and tuned (the base loaded once,
    tuned as its LoRA), or None and why not ("" when two servers are simply what was asked for)."""
    from kit.serve.locate import adapter_of
    from kit.workspace import base_of

    if s.two_servers or set(models) != {"base", "tuned"} or lm.is_awq(models["tuned"]):
        return None, ""
    adapter = adapter_of(models["tuned"])
    if adapter is None:  # a merged model without its adapter folder: serve the merged weights
        return None, ""
    trained_on = base_of(models["tuned"])
    if trained_on is None or trained_on.resolve() != models["base"].resolve():
        return None, f"its adapter {adapter} was trained on {trained_on}, not on the base served here"
    if s.backend == "turbomind":
        return None, "TurboMind serves no LoRA adapters (the PyTorch engine does: --backend pytorch)"
    blocker = lm.adapter_blocker(adapter)
    if blocker:
        return None, (f"its adapter {adapter}: {blocker}; an adapter without them (recipes/bajie.py's GPU "
                      "default) serves beside the base in one server")
    return adapter, ""


def _lmdeploy_plans(models: dict[str, Path], s: ServeSettings, client_host: str, free_mib: float | None,
                    python: Path | None) -> list[ServerPlan]:
    from kit.lmdeploy_env import lmdeploy_python
    from kit.serve.quantize import check_kv, recorded_kv

    check_kv(s.kv)
    if s.backend not in ("auto", "turbomind", "pytorch"):
        raise KitError(f"--backend {s.backend}: expected turbomind, pytorch or auto")
    python = python or lmdeploy_python()
    template = lm.write_chat_template(persona_for(s.character),
                                      cache_dir() / "serve" / f"chat_template-{s.character}.json")
    adapter, why_two = one_server_adapter(models, s)
    # (model name, folder, adapters served beside it) per api_server
    servers = ([("base", models["base"], (("tuned", adapter),))] if adapter
               else [(name, path, ()) for name, path in models.items()])
    free, total = lm.gpu_memory_mib() if free_mib is None else (free_mib, free_mib)
    fractions = lm.cache_fractions(free, [lm.weight_mib(p) + sum(lm.weight_mib(a) for _, a in adapters)
                                          for _, p, adapters in servers], limit_mib=total * s.gpu_fraction)
    plans = []
    for i, ((name, path, adapters), fraction) in enumerate(zip(servers, fractions)):
        # LoRA adapters run on the PyTorch engine only
        backend = "pytorch" if adapters else lm.pick_backend(python, path) if s.backend == "auto" else s.backend
        server = lm.ApiServer(name, path, s.port + i, fraction, backend, s.kv or recorded_kv(path),
                              adapters=adapters, eager=s.eager)
        cmd = lm.api_server_command(python, server, template, s.host, s.api_key_env)
        names = (name, *(n for n, _ in adapters))
        note = f"two LMDeploy servers: {why_two}" if why_two and name == "tuned" else ""
        plans.append(ServerPlan(f"LMDeploy {backend} · {' + '.join(names)}", names, cmd,
                                f"http://{client_host}:{server.port}/v1", 900, note))
    return plans
