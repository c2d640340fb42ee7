"""`kit quantize` and `kit serve`."""

from pathlib import Path

import typer
from rich.console import Console

from kit.errors import KitError

# What W4A16 buys and costs, measured (bench/README.md, "Deploy"): it saves memory, it is not faster.
W4A16_TRADE_OFF = ("trade-off (InternLM2-1.8B shape on an H200, LMDeploy 0.18 PyTorch engine, "
                   "bench/results/2026-12-02-GPU-deploy.json): weights 3,603 → 1,471 MiB (−59 %); one stream "
                   "decodes at 276 tokens/s against fp16's 315, 32 streams at 4,539 against 4,992: quantize "
                   "when memory is the limit, not for speed")


def quantize(
    model: Path = typer.Argument(None, help="HF model folder; default: the newest merged model (docs/serve.md)."),
    w4a16: bool = typer.Option(True, "--w4a16/--no-w4a16", help="AWQ 4-bit weights, fp16 activations."),
    kv: str = typer.Option(None, "--kv", help="KV-cache quantization for serving: int8 or int4."),
    out: Path = typer.Option(None, "-o", "--out", help="Output folder; default: MODEL-w4a16 beside MODEL."),
    character: str = typer.Option(None, help="Whose data calibrates the quantization [default: the one "
                                  "MODEL records (kit_merge.json)]."),
    calib: Path = typer.Option(None, help="Calibration file (JSONL with messages/text, or plain text)."),
    calib_samples: int = typer.Option(64, help="Calibration samples (LMDeploy's default 128)."),
    calib_seqlen: int = typer.Option(1024, help="Tokens per sample (LMDeploy's default 2048)."),
    group_size: int = typer.Option(128, help="AWQ group size."),
):
    """LMDeploy AWQ W4A16 with calibration data taken from the character's own data; KV-cache settings."""
    from kit.artifacts import choose_persona
    from kit.serve.calibration import calibration_texts
    from kit.serve.locate import resolve_models
    from kit.serve.quantize import AwqSettings, check_kv, quantize_model, require_gpu_lmdeploy
    from kit.workspace import quantized_beside

    console = Console()
    check_kv(kv)
    model = resolve_models(None, model)["tuned"]
    character = choose_persona(character, [model], console).character
    if not w4a16:
        if not kv:
            raise KitError("nothing to do: neither --w4a16 nor --kv", "kit quantize MODEL --w4a16 [--kv int8]")
        console.print(f"KV-cache quantization is an engine setting; serve with:\n  kit serve --tuned {model} --kv {kv}")
        return
    python = require_gpu_lmdeploy()
    texts, source = calibration_texts(character, model, calib)
    out = out or quantized_beside(model)
    console.print(f"AWQ W4A16: {model} → {out}\ncalibration: {len(texts)} texts from {source}")
    settings = AwqSettings(calib_samples, calib_seqlen, 1, group_size)
    report = quantize_model(model, out, texts, settings, kv, python)
    console.print(
        f"[green]done[/] in {report['seconds']}s; calibration {report['calib_samples']}×{report['calib_seqlen']} "
        f"tokens (of {report['calib_tokens']})\n"
        f"weights on disk: {report['weights_mib_before']} MiB → {report['weights_mib_after']} MiB\n"
        f"weights on the GPU (fp16 → W4A16): {report['gpu_weights_mib_before']} MiB → "
        f"{report['gpu_weights_mib_after']} MiB; peak GPU memory while quantizing: {report['peak_gpu_mib']} MiB\n"
        f"serve it: kit serve --tuned {out}" + (f" --kv {kv}" if kv else "") + "\n" + W4A16_TRADE_OFF)


def serve(
    base: Path = typer.Option(None, help="Base model folder; default: the base of the newest merged model."),
    tuned: Path = typer.Option(None, help="Tuned model folder; default: the newest merged model."),
    engine: str = typer.Option("auto", help="lmdeploy | transformers | auto (LMDeploy when a GPU and its "
                               "environment are present)."),
    backend: str = typer.Option("auto", help="LMDeploy engine: turbomind | pytorch | auto."),
    kv: str = typer.Option(None, "--kv", help="LMDeploy KV-cache quantization: int8 or int4."),
    gpu_fraction: float = typer.Option(1.0, min=0.05, max=1.0, help="Share of the GPU the servers may use."),
    host: str = typer.Option("127.0.0.1", help="Bind address (anything but loopback exposes the models)."),
    port: int = typer.Option(23333, help="API port (LMDeploy with two servers: base on PORT, tuned on PORT+1)."),
    two_servers: bool = typer.Option(False, "--two-servers", help="LMDeploy: one server per model, even when "
                                     "the tuned model's adapter could be served beside the base in one."),
    eager_mode: bool = typer.Option(False, "--eager-mode", help="LMDeploy PyTorch engine without CUDA graphs: "
                                    "no graph capture at start, slower decoding."),
    ui_port: int = typer.Option(8501, help="Port of the Streamlit compare page."),
    no_ui: bool = typer.Option(False, "--no-ui", help="Serve the API only."),
    character: str = typer.Option(None, help="Persona for the default system prompt and chat template "
                                  "[default: the one the tuned model records (kit_merge.json)]."),
    api_key_env: str = typer.Option(None, help="Environment variable holding an API key to require."),
    votes: Path = typer.Option(None, help="SQLite file for blind A/B votes; default: compare_votes.sqlite "
                               "beside the tuned model's folder."),
):
    """OpenAI-compatible endpoints for base and tuned, then the Streamlit compare page."""
    from kit.serve.session import run_serve
    from kit.serve.settings import ServeSettings

    run_serve(ServeSettings(base=base, tuned=tuned, engine=engine, backend=backend, kv=kv, gpu_fraction=gpu_fraction,
                            two_servers=two_servers, eager=eager_mode, host=host, port=port, ui_port=ui_port,
                            ui=not no_ui, character=character, api_key_env=api_key_env, votes=votes), Console())
