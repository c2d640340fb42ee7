"""A `kit serve` session: choose the models and persona, start the servers and the compare page, say
where they are, watch them, and stop them all on Ctrl-C, SIGTERM or the death of any one."""

import os
import sys
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

from rich.console import Console

from kit.errors import KitError
from kit.keys import is_loopback
from kit.serve.settings import ServeSettings

PAGE = Path(__file__).with_name("compare_app.py")


def _api_key(api_key_env: str | None) -> str | None:
    if not api_key_env:
        return None
    key = os.environ.get(api_key_env)
    if not key:
        raise KitError(f"--api-key-env {api_key_env}: the variable is empty", f"export {api_key_env}=...")
    return key


def run_serve(s: ServeSettings, console: Console) -> None:
    """Serve until stopped; every problem found before a model loads is a KitError."""
    from kit.artifacts import choose_persona
    from kit.serve.launch import Children, require_free_port, sigterm_as_interrupt
    from kit.serve.locate import resolve_models
    from kit.serve.plan import plan_servers, resolve_engine

    models = resolve_models(s.base, s.tuned)
    character = choose_persona(s.character, [models.get("tuned"), models.get("base")], console).character
    key = _api_key(s.api_key_env)
    if not is_loopback(s.host):
        console.print(f"[bold yellow]warning:[/] binding {s.host} exposes the models to the network"
                      + ("" if key else "; consider --api-key-env"))
    s = replace(s, engine=resolve_engine(s.engine), character=character)
    servers = plan_servers(models, s)
    for server in servers:
        require_free_port(s.host, urlparse(server.url).port, "--port")
    if s.ui:
        require_free_port(s.host, s.ui_port, "--ui-port")
    children = Children(console)
    sigterm_as_interrupt()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        for server in servers:
            if server.note:
                console.print(f"note: {server.note}", markup=False)
            console.print(f"starting {server.label}: {' '.join(server.cmd)}")
            proc = children.start(server.label, server.cmd)
            children.wait_ready(server.label, proc, f"{server.url}/models", headers, server.start_timeout)
        console.rule(f"kit serve ({s.engine})")
        for server in servers:
            for name in server.names:
                console.print(f"  {name:6} {models[name]}\n         → {server.url}  (model '{name}')")
        console.print("  try:   curl " + f"{servers[0].url}/models" + (" -H 'Authorization: Bearer $KEY'" if key else ""))
        if s.ui:
            ui = f"http://{s.host}:{s.ui_port}"
            children.start("compare page", page_command(servers, models, s))
            children.wait_ready("compare page", children.procs[-1][1], f"{ui}/_stcore/health", {}, 120)
            console.print(f"  page   → {ui}")
        console.print("Ctrl-C stops everything.")
        sys.stdout.flush()
        children.watch()
    except KeyboardInterrupt:
        console.print("stopping…")
    finally:
        children.stop_all()


def page_command(servers, models: dict[str, Path], s: ServeSettings) -> list[str]:
    """The Streamlit compare page, pointed at each served model (its endpoint and its folder)."""
    from kit.serve import tether

    args = ["run", str(PAGE), "--server.address", s.host,
            "--server.port", str(s.ui_port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--", "--character", s.character] + (["--votes", str(s.votes.resolve())] if s.votes else [])
    for server in servers:
        for name in server.names:
            args += ["--endpoint", f"{name}={server.url}", "--model-path", f"{name}={models[name]}"]
    if s.api_key_env:
        args += ["--api-key-env", s.api_key_env]
    return tether.command(sys.executable, "streamlit", args)
