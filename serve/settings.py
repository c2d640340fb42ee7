"""What `kit serve` is asked to serve and how: one dataclass that the CLI fills once and every part
of the serve stage (the plan of servers, the session that runs them, lab 5's check) reads."""

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServeSettings:
    base: Path | None = None  # None with tuned None: the newest merged model and its base (kit.workspace)
    tuned: Path | None = None
    engine: str = "auto"  # lmdeploy | transformers | auto
    backend: str = "auto"  # LMDeploy's engine: turbomind | pytorch | auto
    kv: str | None = None  # LMDeploy KV-cache quantization: int8 | int4
    gpu_fraction: float = 1.0
    two_servers: bool = False  # LMDeploy: one server per model even when the tuned one has a servable adapter
    eager: bool = False  # LMDeploy's PyTorch engine without CUDA graphs (--eager-mode)
    host: str = "127.0.0.1"
    port: int = 23333  # LMDeploy with two servers: base on port, tuned on port + 1
    ui_port: int = 8501
    ui: bool = True
    character: str | None = None  # None: the one the models record
    api_key_env: str | None = None  # the variable holding the key, never the key itself
    votes: Path | None = None
