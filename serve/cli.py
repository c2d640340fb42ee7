"""`kit quantize` and `kit serve`."""

import sys
from pathlib import Path

import typer
from rich.console import Console

from kit.errors import KitError

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
PAGE = Path(__file__).with_name("compare_app.py")


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
    out = out or model.with_name(f"{model.name}-w4a16")
    console.print(f"AWQ W4A16: {model} → {out}\ncalibration: {len(texts)} texts from {source}")
    settings = AwqSettings(calib_samples, calib_seqlen, 1, group_size)
    report = quantize_model(model, out, texts, settings, kv, python)
    console.print(
        f"[green]done[/] in {report['seconds']}s; calibration {report['calib_samples']}×{report['calib_seqlen']} "
        f"tokens (of {report['calib_tokens']})\n"
        f"weights on disk: {report['weights_mib_before']} MiB → {report['weights_mib_after']} MiB\n"
        f"weights on the GPU (fp16 → W4A16): {report['gpu_weights_mib_before']} MiB → "
        f"{report['gpu_weights_mib_after']} MiB; peak GPU memory while quantizing: {report['peak_gpu_mib']} MiB\n"
        f"serve it: kit serve --tuned {out}" + (f" --kv {kv}" if kv else ""))


def serve(
    base: Path = typer.Option(None, help="Base model folder; default: the base of the newest merged model."),
    tuned: Path = typer.Option(None, help="Tuned model folder; default: the newest merged model."),
    engine: str = typer.Option("auto", help="lmdeploy | transformers | auto (LMDeploy when a GPU and its "
                               "environment are present)."),
    backend: str = typer.Option("auto", help="LMDeploy engine: turbomind | pytorch | auto."),
    kv: str = typer.Option(None, "--kv", help="LMDeploy KV-cache quantization: int8 or int4."),
    gpu_fraction: float = typer.Option(1.0, min=0.05, max=1.0, help="Share of the GPU the servers may use."),
    host: str = typer.Option("127.0.0.1", help="Bind address (anything but loopback exposes the models)."),
    port: int = typer.Option(23333, help="First API port (LMDeploy: base on PORT, tuned on PORT+1)."),
    ui_port: int = typer.Option(8501, help="Port of the Streamlit compare page."),
    no_ui: bool = typer.Option(False, "--no-ui", help="Serve the API only."),
    character: str = typer.Option(None, help="Persona for the default system prompt and chat template "
                                  "[default: the one the tuned model records (kit_merge.json)]."),
    api_key_env: str = typer.Option(None, help="Environment variable holding an API key to require."),
    votes: Path = typer.Option(None, help="SQLite file for blind A/B votes; default: compare_votes.sqlite "
                               "beside the tuned model's folder."),
):
    """OpenAI-compatible endpoints for base and tuned, then the Streamlit compare page."""
    import os

    from urllib.parse import urlparse

    from kit.artifacts import choose_persona
    from kit.serve.launch import Children, require_free_port, sigterm_as_interrupt
    from kit.serve.locate import resolve_models
    from kit.serve.plan import plan_servers, resolve_engine

    console = Console()
    models = resolve_models(base, tuned)
    character = choose_persona(character, [models.get("tuned"), models.get("base")], console).character
    key = None
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise KitError(f"--api-key-env {api_key_env}: the variable is empty", f"export {api_key_env}=...")
    if host not in LOOPBACK:
        console.print(f"[bold yellow]warning:[/] binding {host} exposes the models to the network"
                      + ("" if key else "; consider --api-key-env"))
    engine = resolve_engine(engine)
    servers = plan_servers(models, engine, host, port, character, api_key_env, backend, kv, gpu_fraction)
    for s in servers:
        require_free_port(host, urlparse(s.url).port, "--port")
    if not no_ui:
        require_free_port(host, ui_port, "--ui-port")
    children = Children(console)
    sigterm_as_interrupt()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        for s in servers:
            console.print(f"starting {s.label}: {' '.join(s.cmd)}")
            proc = children.start(s.label, s.cmd)
            children.wait_ready(s.label, proc, f"{s.url}/models", headers, s.start_timeout)
        console.rule(f"kit serve ({engine})")
        for s in servers:
            for name in s.names:
                console.print(f"  {name:6} {models[name]}\n         → {s.url}  (model '{name}')")
        console.print("  try:   curl " + f"{servers[0].url}/models" + (" -H 'Authorization: Bearer $KEY'" if key else ""))
        if not no_ui:
            ui = f"http://{host}:{ui_port}"
            children.start("compare page", page_command(servers, models, host, ui_port, character,
                                                         api_key_env, votes))
            children.wait_ready("compare page", children.procs[-1][1], f"{ui}/_stcore/health", {}, 120)
            console.print(f"  page   → {ui}")
        console.print("Ctrl-C stops everything.")
        sys.stdout.flush()
        children.watch()
    except KeyboardInterrupt:
        console.print("stopping…")
    finally:
        children.stop_all()


def page_command(servers, models: dict[str, Path], host: str, ui_port: int, character: str,
                 api_key_env: str | None, votes: Path | None) -> list[str]:
    from kit.serve import tether

    args = ["run", str(PAGE), "--server.address", host,
            "--server.port", str(ui_port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--", "--character", character] + (["--votes", str(votes.resolve())] if votes else [])
    for s in servers:
        for name in s.names:
            args += ["--endpoint", f"{name}={s.url}", "--model-path", f"{name}={models[name]}"]
    if api_key_env:
        args += ["--api-key-env", api_key_env]
    return tether.command(sys.executable, "streamlit", args)
