"""`kit quantize`: LMDeploy AWQ W4A16 with the character's own calibration text; KV-cache settings.

Defaults are sized for small GPUs (a 10% slice of an A100 is about 8 GB): 64 calibration samples of
1024 tokens, batch 1, no scale search; LMDeploy's AWQ moves one decoder layer at a time to the GPU.
KV-cache quantization is an engine setting, not a file change: it is recorded in OUT/kit_quant.json
and `kit serve` passes it to LMDeploy as --quant-policy 8|4.
"""

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kit import atomic
from kit.errors import KitError
from kit.serve.lmdeploy_cmd import KV_POLICY, weight_mib

DRIVER = Path(__file__).with_name("awq_driver.py")


@dataclass(frozen=True)
class AwqSettings:
    samples: int = 64
    seqlen: int = 1024
    batch_size: int = 1
    group_size: int = 128


def driver_command(python: Path, model: Path, out: Path, calib: Path, s: AwqSettings) -> list[str]:
    return [str(python), str(DRIVER), str(model), str(out), "--calib", str(calib),
            "--samples", str(s.samples), "--seqlen", str(s.seqlen), "--batch-size", str(s.batch_size),
            "--group-size", str(s.group_size)]


def check_kv(kv: str | None) -> None:
    if kv is not None and kv not in KV_POLICY:
        raise KitError(f"--kv {kv}: expected one of {', '.join(KV_POLICY)}")


def require_gpu_lmdeploy() -> Path:
    """LMDeploy's interpreter, or a clear error: LMDeploy runs on GPUs only."""
    import torch

    from kit.lmdeploy_env import require_lmdeploy_python

    if not torch.cuda.is_available():
        raise KitError("LMDeploy needs a GPU: its AWQ quantization and its engines run on CUDA devices "
                       "only, and this machine has none",
                       "run `kit quantize` on a GPU machine (after `make lmdeploy-env`); on CPU, serve "
                       "the unquantized model with `kit serve --engine transformers`")
    return require_lmdeploy_python()


def quantize_model(model: Path, out: Path, texts: list[str], settings: AwqSettings, kv: str | None,
                   python: Path) -> dict:
    """Run the driver into a staged folder (no half-written model on failure); return a size report."""
    with tempfile.TemporaryDirectory() as tmp, atomic.staged_dir(out) as stage:
        calib = Path(tmp) / "calib.json"
        calib.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
        done = subprocess.run(driver_command(python, model, stage, calib, settings))
        if done.returncode != 0:
            raise KitError(f"LMDeploy AWQ failed (exit {done.returncode}) on {model}", "read its output above")
        for stats in stage.glob("*_stats.pth"):  # calibration statistics, not part of the model
            stats.unlink()
        for code in Path(model).glob("*.py"):  # remote code (trust_remote_code) travels with the weights
            if not (stage / code.name).exists():
                shutil.copy(code, stage / code.name)
        awq = json.loads((stage / "kit_awq.json").read_text(encoding="utf-8"))
        report = {"source": str(model), "w4a16": True, "kv": kv, **awq,
                  "weights_mib_before": round(files_mib(model)), "weights_mib_after": round(files_mib(stage)),
                  "gpu_weights_mib_before": round(weight_mib(model)),
                  "gpu_weights_mib_after": round(weight_mib(stage))}
        atomic.write_text(stage / "kit_quant.json", json.dumps(report, indent=2))
    return report


def files_mib(model: Path) -> float:
    return sum(p.stat().st_size for p in Path(model).iterdir()
               if p.suffix in (".safetensors", ".bin")) / 2**20


def recorded_kv(model: Path) -> str | None:
    """The KV-cache setting `kit quantize --kv` recorded for this model, if any."""
    record = Path(model) / "kit_quant.json"
    return json.loads(record.read_text(encoding="utf-8")).get("kv") if record.is_file() else None
