"""Issue 17 ("Lose nothing, leak nothing") re-run: break probes against kit, classified mechanically.

    .venv/bin/python bench/break_probes.py [--demo /tmp/kitdemo2/demo] [--out results.json]
                                           [--only SUBSTRING ...] [--skip-slow] [--keep]

Each probe sets up a temp folder (copies of a finished `kit demo` workdir, a KIT_HOME tree with
datasets/bajie, loopback fake OpenAI servers), runs one `kit ...` command in a subprocess with a timeout
or sends one HTTP request to the embedded server, and classifies what happened:

  clean    refused with exit 2 (or the documented code), a message naming the file/field/URL and a
           `fix:` line, no Python traceback; or an expected-success probe that succeeded
  unclear  refused, but with a traceback, another exit code, or without naming what is wrong / a fix
  wrong    accepted what it should refuse, or a wrong result without a word
  loss     a file or folder that existed before is gone or changed
  leak     a key value in a child's /proc/PID/cmdline, in a file written, in the output, or sent to a
           host it was not meant for (fake servers record every request's headers)

The worst finding of a probe wins (leak > loss > wrong > unclear > clean). Every command carries a
random key in $OPENAI_API_KEY and $KIT_PROBE_KEY; a watcher thread scans /proc/*/cmdline for it (and
for the embedded server's key) the whole time. Nothing outside the temp folder is written: the demo
workdir is only copied (a last probe checks it is byte-for-byte unchanged).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
KIT = str(VENV_BIN / "kit")
PY = str(VENV_BIN / "python")
KEY = "sk-probe-" + secrets.token_hex(12)  # in $OPENAI_API_KEY and $KIT_PROBE_KEY of every command
SERVE_KEY = "sk-serve-" + secrets.token_hex(12)  # the embedded server's key ($KIT_PROBE_SERVE_KEY)
ORG = "org-probe-" + secrets.token_hex(6)  # $OPENAI_ORG_ID: must reach no host either
CLASSES = ["clean", "unclear", "wrong", "loss", "leak"]
SEVERITY = {c: i for i, c in enumerate(CLASSES)}
TRACEBACK = "Traceback (most recent call last)"


# ----------------------------------------------------------------------------------------------- results

@dataclass
class Outcome:
    cls: str
    evidence: str
    repro: str = ""


@dataclass
class Result:
    probe: str
    group: str
    cls: str
    evidence: str
    repro: str
    seconds: float


class Findings:
    """Issues found by one probe; the worst class wins, its first evidence is the probe's."""

    def __init__(self):
        self.items: list[tuple[str, str]] = []

    def add(self, cls: str, text: str) -> None:
        self.items.append((cls, text))

    def outcome(self, ok: str, repro: str = "") -> Outcome:
        bad = [i for i in self.items if i[0] != "clean"]
        if not bad:
            return Outcome("clean", ok, repro)
        worst = max(SEVERITY[c] for c, _ in bad)
        texts = [t for c, t in bad if SEVERITY[c] == worst]
        return Outcome(CLASSES[worst], "; ".join(texts), repro)


def flat(text: str) -> str:
    """Text without whitespace: rich wraps long paths across lines."""
    return "".join(text.split())


def one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def message_line(out: str) -> str:
    """The line of the output that says what went wrong (for the evidence column)."""
    lines = [l.strip() for l in out.splitlines() if l.strip()]
    for prefix in ("error:", "Error", "│ Invalid", "│"):
        for l in lines:
            if l.startswith(prefix) and len(l) > 3:
                return l
    return lines[-1] if lines else "(no output)"


# ----------------------------------------------------------------------------------------------- watcher

class CmdlineWatcher(threading.Thread):
    """Scans every process's command line for the keys while the probes run."""

    def __init__(self, secrets_: list[str]):
        super().__init__(daemon=True)
        self.needles = [s.encode() for s in secrets_]
        self.hits: list[tuple[str, int, str]] = []  # (probe, pid, cmdline excerpt)
        self.probe = "-"
        self.stop = threading.Event()
        self.scans = 0

    def scan(self) -> None:
        me = os.getpid()
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if any(n in cmd for n in self.needles):
                text = cmd.replace(b"\0", b" ").decode(errors="replace")
                for n in self.needles:
                    text = text.replace(n.decode(), "<KEY>")
                self.hits.append((self.probe, int(entry.name), text[:200]))
        self.scans += 1

    def run(self) -> None:
        while not self.stop.wait(0.2):
            self.scan()

    def hits_for(self, probe: str) -> list[tuple[str, int, str]]:
        """One hit per process (it is seen at every scan while it lives)."""
        return list({h[1]: h for h in self.hits if h[0] == probe}.values())


WATCHER = CmdlineWatcher([KEY, SERVE_KEY])


# ------------------------------------------------------------------------------------------ running kit

@dataclass
class Run:
    cmd: list[str]
    rc: int | None
    out: str
    seconds: float
    timed_out: bool = False

    @property
    def text(self) -> str:
        return f"rc={self.rc}{' (timed out)' if self.timed_out else ''} {self.seconds:.1f}s: {message_line(self.out)}"


class Env:
    """The environment every command gets: the keys, a private KIT_CACHE, wide rich output."""

    def __init__(self, root: Path):
        self.root = root
        self.base = {k: v for k, v in os.environ.items() if not k.startswith(("KIT_", "OPENAI_"))}
        self.base.update({"OPENAI_API_KEY": KEY, "KIT_PROBE_KEY": KEY, "OPENAI_ORG_ID": ORG,
                          "OPENAI_PROJECT_ID": ORG, "KIT_CACHE": str(root / "kit-cache"),
                          "COLUMNS": "300", "TERM": "dumb", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1",
                          "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"})

    def make(self, extra: dict | None = None) -> dict:
        env = dict(self.base)
        for k, v in (extra or {}).items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        return env


def run_cmd(cmd: list[str], env: dict, cwd: Path, timeout: float = 120) -> Run:
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # our own child's group
        out, _ = proc.communicate()
        timed_out = True
    return Run(cmd, proc.returncode, out.decode(errors="replace"), time.monotonic() - start, timed_out)


def shell(cmd: list[str], extra_env: dict | None = None, cwd: Path | None = None) -> str:
    """How to reproduce a command (keys by variable, never by value)."""
    import shlex

    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in (extra_env or {}).items())
    cmd = [c.replace(KIT, "kit").replace(PY, ".venv/bin/python") for c in cmd]
    where = f"cd {cwd} && " if cwd else ""
    return f"{where}{env + ' ' if env else ''}{shlex.join(cmd)}"


def check_refusal(f: Findings, r: Run, names: list[str] = (), code: int = 2, fix: bool = True) -> None:
    """exit `code`, no traceback, a fix: line, each of `names` in the output."""
    if r.timed_out:
        f.add("wrong", f"did not stop within the timeout ({r.seconds:.0f}s): {message_line(r.out)}")
        return
    if r.rc == 0:
        f.add("wrong", f"accepted (rc 0): {message_line(r.out)}")
        return
    if TRACEBACK in r.out:
        last = [l for l in r.out.splitlines() if l.strip()][-1]
        f.add("unclear", f"traceback (rc {r.rc}): {one_line(last)}")
    if r.rc != code:
        f.add("unclear", f"rc {r.rc}, not {code}: {message_line(r.out)}")
    if fix and "fix:" not in r.out:
        f.add("unclear", f"no `fix:` line: {message_line(r.out)}")
    missing = [n for n in names if flat(n) not in flat(r.out)]
    if missing:
        f.add("unclear", f"does not name {missing}: {message_line(r.out)}")


def check_success(f: Findings, r: Run) -> None:
    if r.timed_out or r.rc != 0:
        f.add("wrong", f"a correct command failed: {r.text}")
    elif TRACEBACK in r.out:
        f.add("unclear", "succeeded but printed a traceback")


def check_no_key(f: Findings, r: Run | None = None, folders: list[Path] = (), probe: str = "") -> None:
    if r is not None and (KEY in r.out or SERVE_KEY in r.out):
        f.add("leak", "a key value appears in the command's output")
    for folder in folders:
        for path in files_with_key(folder):
            f.add("leak", f"a key value is written in {path}")
    for _, pid, cmd in WATCHER.hits_for(probe):
        f.add("leak", f"a key value is in /proc/{pid}/cmdline: {cmd}")


def files_with_key(folder: Path) -> list[Path]:
    hits = []
    needles = [KEY.encode(), SERVE_KEY.encode()]
    if not Path(folder).exists():
        return hits
    for dirpath, _, names in os.walk(folder):
        for name in names:
            p = Path(dirpath) / name
            try:
                if p.is_symlink() or p.stat().st_size > 200 * 2**20:
                    continue
                data = p.read_bytes()
            except OSError:
                continue
            if any(n in data for n in needles):
                hits.append(p)
    return hits


# -------------------------------------------------------------------------------------------- snapshots

def snapshot(*paths: Path) -> dict[str, str]:
    """path -> sha256 (files), 'dir' (folders), 'link:TARGET' (symlinks), for each path and below."""
    snap = {}
    for top in paths:
        top = Path(top)
        if top.is_symlink():
            snap[str(top)] = f"link:{os.readlink(top)}"
            continue
        if top.is_file():
            snap[str(top)] = hashlib.sha256(top.read_bytes()).hexdigest()
            continue
        if not top.is_dir():
            continue
        snap[str(top)] = "dir"
        for dirpath, dirs, names in os.walk(top):
            for d in dirs:
                snap[os.path.join(dirpath, d)] = "dir"
            for n in names:
                p = os.path.join(dirpath, n)
                if os.path.islink(p):
                    snap[p] = f"link:{os.readlink(p)}"
                else:
                    h = hashlib.sha256()
                    with open(p, "rb") as fh:
                        for chunk in iter(lambda: fh.read(1 << 20), b""):
                            h.update(chunk)
                    snap[p] = h.hexdigest()
    return snap


def check_kept(f: Findings, before: dict[str, str], after: dict[str, str]) -> None:
    gone = [p for p in before if p not in after]
    changed = [p for p in before if p in after and before[p] != after[p]]
    if gone:
        f.add("loss", f"{len(gone)} path(s) gone, e.g. {gone[0]}")
    if changed:
        f.add("loss", f"{len(changed)} file(s) changed, e.g. {changed[0]}")


# ----------------------------------------------------------------------------------- fake OpenAI server

DIALOGUES = [
    ("你是谁？", "俺老猪便是猪八戒，天蓬元帅下凡，如今跟着师父去西天取经。"),
    ("饿了吗？", "饿得前胸贴后背！师父，歇歇再走吧，这斋饭好香。"),
    ("想家吗？", "想那高老庄的翠兰娘子，分行李，散伙！俺回高老庄去。"),
    ("怕妖怪吗？", "猴哥，救命啊！那妖精凶得很，老猪的钉耙都吓掉了。"),
    ("沙和尚呢？", "沙师弟挑着担子走在后头，嘿嘿，老实得很。"),
    ("你会什么？", "俺老猪会三十六般变化，还会睡觉吃饭，嘿嘿。"),
]


class FakeAPI:
    """A loopback OpenAI-compatible server that records every request's method, path and headers.

    mode: ok (models, chat; /v1/completions 404), 401, 429once (429 with Retry-After 86400, then ok),
    garbage (200 with an HTML body), judge_text (chat content with no score), judge_raw (200 non-JSON).
    """

    def __init__(self, mode: str = "ok"):
        self.mode, self.requests, self.chat_calls = mode, [], 0
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def _send(self, status: int, body, headers: dict | None = None):
                data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if not isinstance(body, bytes) else "text/html")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _record(self, body: bytes):
                with api.lock:
                    api.requests.append({"method": self.command, "path": self.path,
                                         "headers": {k.lower(): v for k, v in self.headers.items()},
                                         "body": body.decode(errors="replace")[:2000]})

            def do_GET(self):
                self._record(b"")
                api.answer(self, None)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._record(body)
                api.answer(self, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, h, body: bytes | None) -> None:
        err = lambda status, msg: {"error": {"message": msg, "type": "invalid_request_error",
                                             "param": None, "code": status}}
        if self.mode == "401":
            return h._send(401, err(401, "Incorrect API key provided"))
        path = h.path.split("?")[0]
        if path.endswith("/models"):
            return h._send(200, {"object": "list", "data": [{"id": "m", "object": "model", "created": 0,
                                                              "owned_by": "probe"}]})
        if not path.endswith("/chat/completions"):
            return h._send(404, err(404, f"no route {path}"))
        with self.lock:
            self.chat_calls += 1
            call = self.chat_calls
        if self.mode == "429once" and call == 1:
            return h._send(429, err(429, "rate limited"), {"Retry-After": "86400"})
        if self.mode == "garbage" or self.mode == "judge_raw":
            return h._send(200, b"<html>502 Bad Gateway (not JSON)</html>")
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            req = {}
        system = " ".join(m.get("content", "") for m in req.get("messages", []) if m.get("role") == "system")
        if "编剧" in system:  # kit data generate's request
            u, a = DIALOGUES[(call - 1) % len(DIALOGUES)]
            content = json.dumps({"dialogue": [{"role": "user", "content": u},
                                               {"role": "assistant", "content": a}]}, ensure_ascii=False)
        elif self.mode == "judge_text" and "QUESTION:" in json.dumps(req, ensure_ascii=False):
            content = "This reply is lovely, very much in character. I like it."
        else:
            content = "俺老猪饿了，师父，歇歇再走吧。"
        h._send(200, {"id": f"c{call}", "object": "chat.completion", "created": 0, "model": req.get("model", "m"),
                      "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                   "finish_reason": "stop"}],
                      "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}})

    def auths(self) -> list[str]:
        return [r["headers"].get("authorization", "") for r in self.requests]

    def header_values(self) -> str:
        return json.dumps([r["headers"] for r in self.requests])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


# -------------------------------------------------------------------------------------------- fixtures

class Fixture:
    """Copies of the demo workdir and of datasets/bajie under ROOT, never the originals."""

    def __init__(self, root: Path, demo: Path):
        self.root, self.demo_src = root, demo
        self.demo = root / "demo"  # base, data, work (one checkpoint), merged
        self.kh = root / "kithome"  # KIT_HOME: datasets/bajie
        self.env = Env(root)
        self._built_other = False

    def setup(self) -> None:
        d, src = self.demo, self.demo_src
        (d / "work").mkdir(parents=True)
        for name in ("base", "data", "merged"):
            shutil.copytree(src / name, d / name, symlinks=True)
        ckpt = (src / "work" / "last_checkpoint").read_text().strip()
        ckpt = Path(ckpt) if Path(ckpt).is_file() else sorted((src / "work").glob("iter_*.pth"))[-1]
        shutil.copy2(ckpt, d / "work" / ckpt.name)
        (d / "work" / "last_checkpoint").write_text(str(d / "work" / ckpt.name))
        (self.kh / "datasets").mkdir(parents=True)
        shutil.copytree(REPO / "datasets" / "bajie", self.kh / "datasets" / "bajie", symlinks=True)
        for extra in ("built",):  # built files are not needed, and may be large
            shutil.rmtree(self.kh / "datasets" / "bajie" / extra, ignore_errors=True)
        config = next((src / "work").glob("*.py")).read_text()
        config = config.replace(str(src), str(d))
        config = config.replace(str(REPO / "datasets" / "bajie"), str(self.kh / "datasets" / "bajie"))
        (d / "work" / next((src / "work").glob("*.py")).name).write_text(config)
        self.pristine = snapshot(d / "base", d / "data", d / "work", self.kh)

    @property
    def work(self) -> Path:
        return self.demo / "work"

    @property
    def base(self) -> Path:
        return self.demo / "base"

    @property
    def merged(self) -> Path:
        return self.demo / "merged"

    @property
    def persona(self) -> Path:
        return self.kh / "datasets" / "bajie" / "persona.yaml"

    @property
    def eval_file(self) -> Path:
        return self.demo / "data" / "eval.jsonl"

    def inputs(self) -> dict[str, str]:
        return snapshot(self.base, self.demo / "data", self.work, self.kh)

    def restore_if_changed(self) -> None:
        """A probe that damaged the copies (a finding) must not spoil the next ones."""
        if self.inputs() != self.pristine:
            for p in (self.demo, self.kh):
                shutil.rmtree(p, ignore_errors=True)
            self.setup()

    def tmp(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))

    def endless_model(self) -> Path:
        """A copy of the merged model that cannot stop: its stop tokens are renamed and its eos is <unk>,
        so a request runs to max_tokens (the tiny model otherwise ends a reply within ~30 tokens, too soon
        to hang up on)."""
        endless = self.root / "merged-endless"
        if endless.exists():
            return endless
        shutil.copytree(self.merged, endless)
        rename = {"</s>": "</s_x>", "<|im_end|>": "<|im_end_x|>"}

        def fix(o):
            if isinstance(o, str):
                return rename.get(o, o)
            if isinstance(o, list):
                return [fix(x) for x in o]
            if isinstance(o, dict):
                return {rename.get(k, k): fix(v) for k, v in o.items()}
            return o

        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            data = json.loads((endless / name).read_text())
            template = data.pop("chat_template", None)
            data = fix(data)
            if name != "tokenizer.json":
                data.update(eos_token="<unk>", pad_token="<unk>")
            if template is not None:
                data["chat_template"] = template
            (endless / name).write_text(json.dumps(data, ensure_ascii=False))
        for name in ("generation_config.json", "config.json"):
            data = json.loads((endless / name).read_text())
            data.update(eos_token_id=[0] if name == "generation_config.json" else 0, pad_token_id=0)
            (endless / name).write_text(json.dumps(data))
        return endless

    def other_base(self) -> Path:
        """A copy of the base with the same shapes and one tensor perturbed."""
        other = self.root / "base-other-weights"
        if not self._built_other:
            shutil.copytree(self.base, other)
            code = ("import sys, torch\nfrom safetensors.torch import load_file, save_file\n"
                    "p = sys.argv[1]\nt = load_file(p)\nname = sorted(t)[0]\n"
                    "t[name] = (t[name].float() + 0.01).to(t[name].dtype)\n"
                    "save_file(t, p, metadata={'format': 'pt'})\nprint(name)\n")
            subprocess.run([PY, "-c", code, str(other / "model.safetensors")], check=True,
                           capture_output=True, timeout=120, env=self.env.make())
            self._built_other = True
        return other


# ---------------------------------------------------------------------------------------------- probes

PROBES: list[tuple[str, str, Callable, bool]] = []  # (name, group, fn, slow)


def probe(group: str, slow: bool = False):
    def register(fn):
        PROBES.append((fn.__name__, group, fn, slow))
        return fn
    return register


class Ctx:
    def __init__(self, fx: Fixture, name: str):
        self.fx, self.name = fx, name

    def kit(self, args: list, *, cwd: Path | None = None, env: dict | None = None,
            timeout: float = 120) -> Run:
        cmd = [KIT, *map(str, args)]
        self.last_cmd, self.last_env = cmd, env
        return run_cmd(cmd, self.fx.env.make(env), cwd or self.fx.root, timeout)

    def repro(self, cwd: Path | None = None) -> str:
        env = {k: v for k, v in (self.last_env or {}).items() if v is not None and k != "KIT_PROBE_SERVE_KEY"}
        return shell(self.last_cmd, env, cwd)


def merge_refusal(c: Ctx, extra: list, names: list[str], user_paths: list[Path] = ()) -> Outcome:
    fx, f = c.fx, Findings()
    before = snapshot(*user_paths) if user_paths else {}
    inputs = fx.inputs()
    r = c.kit(["merge", fx.work, *extra])
    check_refusal(f, r, names)
    check_kept(f, inputs, fx.inputs())
    if user_paths:
        check_kept(f, before, snapshot(*user_paths))
    check_no_key(f, r, probe=c.name)
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


# --- kit merge ---------------------------------------------------------------------------------------

def _user_folder(c: Ctx) -> Path:
    d = c.fx.tmp("userfolder")
    (d / "thesis.md").write_text("my only copy\n")
    (d / "sub").mkdir()
    (d / "sub" / "photo.txt").write_text("irreplaceable\n")
    return d


@probe("merge")
def merge_out_user_folder(c: Ctx) -> Outcome:
    d = _user_folder(c)
    return merge_refusal(c, ["-o", d, "--adapter-out", c.fx.tmp("a")], [str(d), "--out"], [d])


@probe("merge")
def merge_adapter_out_user_folder(c: Ctx) -> Outcome:
    d = _user_folder(c)
    return merge_refusal(c, ["-o", c.fx.tmp("m"), "--adapter-out", d], [str(d), "--adapter-out"], [d])


@probe("merge")
def merge_out_run_folder(c: Ctx) -> Outcome:
    return merge_refusal(c, ["-o", c.fx.work], [str(c.fx.work), "--out"])


@probe("merge")
def merge_out_run_folder_force(c: Ctx) -> Outcome:
    return merge_refusal(c, ["-o", c.fx.work, "--force"], [str(c.fx.work), "--out"])


@probe("merge")
def merge_out_base_force(c: Ctx) -> Outcome:
    return merge_refusal(c, ["-o", c.fx.base, "--force"], [str(c.fx.base)])


@probe("merge")
def merge_adapter_out_base_force(c: Ctx) -> Outcome:
    return merge_refusal(c, ["--adapter-out", c.fx.base, "-o", c.fx.tmp("m"), "--force"],
                         [str(c.fx.base), "--adapter-out"])


@probe("merge")
def merge_out_data_dir_force(c: Ctx) -> Outcome:
    d = c.fx.demo / "data"
    return merge_refusal(c, ["-o", d, "--force"], [str(d)])


@probe("merge")
def merge_out_persona_folder_force(c: Ctx) -> Outcome:
    d = c.fx.persona.parent
    return merge_refusal(c, ["-o", d, "--force"], [str(d)])


@probe("merge")
def merge_out_parent_of_run_force(c: Ctx) -> Outcome:
    return merge_refusal(c, ["-o", c.fx.demo, "--force"], [str(c.fx.demo)])


@probe("merge")
def merge_out_symlink_to_base_force(c: Ctx) -> Outcome:
    link = c.fx.tmp("links") / "looks-new"
    link.symlink_to(c.fx.base)
    return merge_refusal(c, ["-o", link, "--force"], ["--out", str(c.fx.base)])


@probe("merge")
def merge_out_checkpoint_file(c: Ctx) -> Outcome:
    ckpt = next(c.fx.work.glob("iter_*.pth"))
    return merge_refusal(c, ["-o", ckpt, "--force"], [str(ckpt)])


@probe("merge")
def merge_out_existing_file(c: Ctx) -> Outcome:
    p = c.fx.tmp("file") / "notes.txt"
    p.write_text("keep me\n")
    return merge_refusal(c, ["-o", p, "--adapter-out", c.fx.tmp("a")], [str(p)], [p])


@probe("merge")
def merge_out_same_as_adapter_out(c: Ctx) -> Outcome:
    d = c.fx.tmp("same") / "x"
    return merge_refusal(c, ["-o", d, "--adapter-out", d], [str(d)])


@probe("merge")
def merge_base_other_weights(c: Ctx) -> Outcome:
    other = c.fx.other_base()
    return merge_refusal(c, ["--base", other, "-o", c.fx.tmp("m"), "--adapter-out", c.fx.tmp("a")],
                         [str(other), "--allow-base-mismatch"], [other])


@probe("merge")
def merge_base_nonexistent(c: Ctx) -> Outcome:
    return merge_refusal(c, ["--base", "/nonexistent/base", "-o", c.fx.tmp("m")], ["/nonexistent/base"])


@probe("merge")
def merge_run_nonexistent(c: Ctx) -> Outcome:
    f = Findings()
    r = c.kit(["merge", "/nonexistent/run"])
    check_refusal(f, r, ["/nonexistent/run"])
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


@probe("merge")
def merge_checkpoint_missing(c: Ctx) -> Outcome:
    return merge_refusal(c, ["-c", "iter_99999.pth", "-o", c.fx.tmp("m")], ["iter_99999.pth"])


@probe("merge")
def merge_bad_dtype(c: Ctx) -> Outcome:
    return merge_refusal(c, ["--dtype", "fp8", "-o", c.fx.tmp("m")], ["fp8"])


@probe("merge", slow=True)
def merge_killed_then_rerun_cleans_partials(c: Ctx) -> Outcome:
    """SIGKILL a merge once its staging folder exists; the next merge removes that folder (and a dead
    writer's), keeps a live writer's, and succeeds."""
    fx, f = c.fx, Findings()
    out_parent = fx.tmp("mergeout")
    out, adapter = out_parent / "merged", out_parent / "adapter"
    cmd = [KIT, "merge", str(fx.work), "-o", str(out), "--adapter-out", str(adapter)]
    env = fx.env.make()
    proc = subprocess.Popen(cmd, cwd=fx.root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline, staged = time.monotonic() + 90, []
    while time.monotonic() < deadline and proc.poll() is None:
        staged = [p for p in out_parent.iterdir() if ".partial-" in p.name]
        if staged and any(s.name.startswith(".merged.") for s in staged):
            time.sleep(1.0)
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    staged = [p for p in out_parent.iterdir() if ".partial-" in p.name]
    staged_kib = sum(q.stat().st_size for p in staged for q in p.rglob("*") if q.is_file()) / 1024
    if not staged:
        f.add("unclear", "could not catch the merge mid-way (no .partial- folder seen); probe inconclusive")
    host = socket.gethostname()
    live = out_parent / f".merged.partial-{host}-{os.getpid()}-live0"  # this script is alive
    live.mkdir()
    (live / "marker").write_text("a live writer's folder\n")
    r = run_cmd(cmd, env, fx.root, timeout=240)
    c.last_cmd, c.last_env = cmd, None
    check_success(f, r)
    left = [p.name for p in out_parent.iterdir() if ".partial-" in p.name and p != live]
    if left:
        f.add("wrong", f"killed merge's staging folder(s) still there: {left}")
    if not live.is_dir():
        f.add("loss", f"a live writer's staging folder {live.name} was removed")
    if r.rc == 0 and not (out / "kit_merge.json").is_file():
        f.add("wrong", "merge said ok but merged/kit_merge.json is missing")
    check_no_key(f, r, [out_parent], c.name)
    shutil.rmtree(live, ignore_errors=True)
    freed = [l for l in r.out.splitlines() if "freed" in l]
    return f.outcome(f"killed with {[s.name[:24] for s in staged]} ({staged_kib:,.0f} KiB); re-run rc 0, "
                     f"they are gone{' (' + one_line(freed[0], 60) + ')' if freed else ''}; a live writer's kept",
                     c.repro())


# --- kit data extract ----------------------------------------------------------------------------------

SCRIPT = "孙悟空：呆子，快走！\n猪八戒：猴哥，俺老猪走不动了，歇歇吧。\n唐僧：悟能，休要偷懒。\n猪八戒：师父，俺老猪饿得慌。\n"


def _extract(c: Ctx, src: Path, out, names: list[str], guard: list[Path]) -> Outcome:
    f = Findings()
    before = snapshot(*guard)
    r = c.kit(["data", "extract", src, "--character", "bajie", "-o", out], env={"KIT_HOME": str(c.fx.kh)})
    check_refusal(f, r, names)
    check_kept(f, before, snapshot(*guard))
    check_no_key(f, r, probe=c.name)
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


@probe("extract")
def extract_out_is_src(c: Ctx) -> Outcome:
    d = c.fx.tmp("extract")
    src = d / "script.txt"
    src.write_text(SCRIPT)
    return _extract(c, src, src, [str(src)], [src])


@probe("extract")
def extract_out_symlink_to_src(c: Ctx) -> Outcome:
    d = c.fx.tmp("extract")
    src = d / "script.txt"
    src.write_text(SCRIPT)
    (d / "out.jsonl").symlink_to(src)
    return _extract(c, src, d / "out.jsonl", ["-o"], [src, d / "out.jsonl"])


@probe("extract")
def extract_out_existing_dir(c: Ctx) -> Outcome:
    d = c.fx.tmp("extract")
    src = d / "script.txt"
    src.write_text(SCRIPT)
    (d / "mydir").mkdir()
    (d / "mydir" / "keep.txt").write_text("keep\n")
    return _extract(c, src, d / "mydir", [str(d / "mydir")], [d / "mydir", src])


@probe("extract")
def extract_out_is_persona(c: Ctx) -> Outcome:
    d = c.fx.tmp("extract")
    src = d / "script.txt"
    src.write_text(SCRIPT)
    return _extract(c, src, c.fx.persona, [str(c.fx.persona)], [c.fx.persona, src])


@probe("extract")
def extract_src_missing(c: Ctx) -> Outcome:
    d = c.fx.tmp("extract")
    return _extract(c, d / "nope.txt", d / "o.jsonl", [str(d / "nope.txt")], [])


@probe("extract")
def extract_src_not_utf8(c: Ctx) -> Outcome:
    d = c.fx.tmp("extract")
    src = d / "gbk.txt"
    src.write_bytes(SCRIPT.encode("gbk"))
    return _extract(c, src, d / "o.jsonl", [str(src)], [src])


@probe("extract")
def extract_src_is_dir(c: Ctx) -> Outcome:
    d = c.fx.tmp("extract")
    return _extract(c, d, d / "o.jsonl", [str(d)], [])


@probe("extract")
def extract_no_lines_for_character(c: Ctx) -> Outcome:
    """A source in which the character never speaks: an error, or an empty file with a word, not silence."""
    d = c.fx.tmp("extract")
    src = d / "s.txt"
    src.write_text("孙悟空：走！\n唐僧：好。\n")
    f = Findings()
    out = d / "o.jsonl"
    r = c.kit(["data", "extract", src, "--character", "bajie", "-o", out], env={"KIT_HOME": str(c.fx.kh)})
    if r.rc == 0:
        said = any(w in r.out for w in ("0 ", "no line", "warning", "nothing"))
        if not said:
            f.add("wrong", f"rc 0 and no word about finding no lines: {message_line(r.out)}")
        return f.outcome(f"rc 0, says so: {message_line(r.out)}", c.repro())
    check_refusal(f, r, [str(src)])
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


@probe("extract")
def extract_ok(c: Ctx) -> Outcome:
    d = c.fx.tmp("extract")
    src = d / "script.txt"
    src.write_text(SCRIPT)
    f = Findings()
    out = d / "o.jsonl"
    r = c.kit(["data", "extract", src, "--character", "bajie", "-o", out], env={"KIT_HOME": str(c.fx.kh)})
    check_success(f, r)
    n = len(out.read_text().splitlines()) if out.is_file() else 0
    if r.rc == 0 and n != 2:
        f.add("wrong", f"expected 2 lines of 猪八戒, got {n}")
    return f.outcome(f"rc 0, {n} samples", c.repro())


# --- kit data generate ---------------------------------------------------------------------------------

def _gen_args(c: Ctx, url: str, out: Path, n: int = 2, extra: list = ()) -> list:
    return ["data", "generate", "--persona", c.fx.persona, "-n", n, "--base-url", url, "--model", "m",
            "-o", out, "--concurrency", "1", *extra]


def _gen_leaks(f: Findings, api: FakeAPI | None, allowed_key: bool) -> None:
    if api is None:
        return
    heads = api.header_values()
    if ORG in heads:
        f.add("leak", f"$OPENAI_ORG_ID/$OPENAI_PROJECT_ID sent to {api.url}")
    if not allowed_key and KEY in heads:
        f.add("leak", f"the key was sent to {api.url}")


def _gen_refused(c: Ctx, out: Path, kept: Path, names: list, extra: list = ()) -> tuple[Findings, Run]:
    """A generate command that must be refused before any paid call, leaving `kept` as it was."""
    api, f = FakeAPI("ok"), Findings()
    before = snapshot(kept)
    r = c.kit(_gen_args(c, api.url, out, extra=extra))
    check_refusal(f, r, names)
    check_kept(f, before, snapshot(kept))
    if api.requests:
        f.add("wrong", f"{len(api.requests)} request(s) sent before refusing")
    api.close()
    return f, r


@probe("generate")
def generate_out_is_cache(c: Ctx) -> Outcome:
    d = c.fx.tmp("gen")
    x = d / "x.jsonl"
    x.write_text('{"key": "k", "index": 0, "content": "a finished paid call"}\n')
    f, r = _gen_refused(c, x, x, [str(x)], extra=["--cache", x])
    check_no_key(f, r, [d], c.name)
    return f.outcome(f"refused before any call: {message_line(r.out)}", c.repro())


@probe("generate")
def generate_out_is_persona(c: Ctx) -> Outcome:
    f, r = _gen_refused(c, c.fx.persona, c.fx.persona, [str(c.fx.persona)])
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


@probe("generate")
def generate_cache_is_persona(c: Ctx) -> Outcome:
    out = c.fx.tmp("gen") / "o.jsonl"
    f, r = _gen_refused(c, out, c.fx.persona, [str(c.fx.persona), "--cache"], extra=["--cache", c.fx.persona])
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


@probe("generate")
def generate_out_existing_dir(c: Ctx) -> Outcome:
    mine = c.fx.tmp("gen") / "mine"
    mine.mkdir()
    (mine / "a.txt").write_text("keep\n")
    f, r = _gen_refused(c, mine, mine, [str(mine)])
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


def _gen_fail(c: Ctx, mode: str, old: bool, names: list[str], extra: list = ()) -> Outcome:
    api, f = FakeAPI(mode), Findings()
    d = c.fx.tmp("gen")
    out = d / "dialogues.jsonl"
    if old:
        out.write_text('{"messages": [{"role": "user", "content": "旧的"}, {"role": "assistant", "content": "俺老猪的旧数据"}]}\n')
    before = snapshot(d)
    r = c.kit(_gen_args(c, api.url, out, extra=["--retries", "0", *extra]))
    check_refusal(f, r, names)
    after = snapshot(d)
    check_kept(f, {k: v for k, v in before.items()}, after)
    if not old and out.exists():
        f.add("wrong", f"{out.name} written although no call succeeded ({out.stat().st_size} bytes)")
    _gen_leaks(f, api, allowed_key=True)
    check_no_key(f, r, [d], c.name)
    api.close()
    return f.outcome(f"refused, {'old OUT kept' if old else 'no OUT written'}: {message_line(r.out)}", c.repro())


@probe("generate")
def generate_401_keeps_old_out(c: Ctx) -> Outcome:
    return _gen_fail(c, "401", True, ["401"])


@probe("generate")
def generate_401_writes_no_out(c: Ctx) -> Outcome:
    return _gen_fail(c, "401", False, ["401"])


@probe("generate")
def generate_garbage_answers_keep_old_out(c: Ctx) -> Outcome:
    return _gen_fail(c, "garbage", True, ["broken response"])


@probe("generate")
def generate_key_to_other_host_plain_http(c: Ctx) -> Outcome:
    f = Findings()
    d = c.fx.tmp("gen")
    r = c.kit(_gen_args(c, "http://10.0.0.1:9/v1", d / "o.jsonl", extra=["--timeout", "5", "--retries", "0"]),
              timeout=60)
    check_refusal(f, r, ["http://10.0.0.1:9/v1"])
    if r.rc != 0 and "plain http" not in r.out:
        f.add("unclear", f"refused, but not for sending the key over plain http: {message_line(r.out)}")
    if r.seconds > 20:
        f.add("wrong", f"took {r.seconds:.0f}s: it tried to connect before refusing")
    check_no_key(f, r, [d], c.name)
    return f.outcome(f"refused in {r.seconds:.1f}s: {message_line(r.out)}", c.repro())


@probe("generate")
def generate_no_key_for_remote_host(c: Ctx) -> Outcome:
    f = Findings()
    d = c.fx.tmp("gen")
    r = c.kit(_gen_args(c, "https://api.example.invalid/v1", d / "o.jsonl",
                        extra=["--api-key-env", "KIT_PROBE_UNSET_VAR"]), timeout=60)
    check_refusal(f, r, ["KIT_PROBE_UNSET_VAR"])
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


@probe("generate")
def generate_n_zero(c: Ctx) -> Outcome:
    f = Findings()
    d = c.fx.tmp("gen")
    r = c.kit(_gen_args(c, "http://127.0.0.1:9/v1", d / "o.jsonl", n=0))
    check_refusal(f, r, ["-n"], fix=False)  # a parser error: names the option, no fix line by design
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


@probe("generate")
def generate_persona_missing(c: Ctx) -> Outcome:
    f = Findings()
    d = c.fx.tmp("gen")
    r = c.kit(["data", "generate", "--persona", d / "nope.yaml", "-n", 1, "--base-url", "http://127.0.0.1:9/v1",
               "--model", "m", "-o", d / "o.jsonl"])
    check_refusal(f, r, [str(d / "nope.yaml")])
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


@probe("generate")
def generate_ok_then_resume_from_cache(c: Ctx) -> Outcome:
    """A correct run writes n dialogues; the same command again sends no call (all cached); the key goes
    only to the loopback server it was meant for, no org/project header, no key in OUT or the cache."""
    api, f = FakeAPI("ok"), Findings()
    d = c.fx.tmp("gen")
    out = d / "dialogues.jsonl"
    r = c.kit(_gen_args(c, api.url, out, n=2))
    check_success(f, r)
    lines = out.read_text().splitlines() if out.is_file() else []
    if r.rc == 0 and len(lines) != 2:
        f.add("wrong", f"asked for 2 dialogues, {out.name} holds {len(lines)}")
    sent = api.chat_calls
    r2 = c.kit(_gen_args(c, api.url, out, n=2))
    check_success(f, r2)
    if api.chat_calls != sent:
        f.add("wrong", f"the re-run sent {api.chat_calls - sent} call(s) again (cache not used)")
    if any(a != f"Bearer {KEY}" for a in api.auths()):
        f.add("wrong", f"not the named key sent to the server it is meant for: {set(api.auths())}")
    _gen_leaks(f, api, allowed_key=True)
    check_no_key(f, r, [d], c.name)
    check_no_key(f, r2)
    api.close()
    return f.outcome(f"2 dialogues in {sent} calls; re-run sent 0; no org header", c.repro())


@probe("generate", slow=True)
def generate_retry_after_day_is_capped(c: Ctx) -> Outcome:
    api, f = FakeAPI("429once"), Findings()
    d = c.fx.tmp("gen")
    out = d / "dialogues.jsonl"
    r = c.kit(_gen_args(c, api.url, out, n=1, extra=["--retries", "1"]), timeout=150)
    check_success(f, r)
    if r.seconds > 100:
        f.add("wrong", f"took {r.seconds:.0f}s after Retry-After: 86400")
    if "Retry-After" not in r.out:
        f.add("unclear", "waited without saying why (no Retry-After note)")
    note = next((l for l in r.out.splitlines() if "Retry-After" in l), "")
    api.close()
    return f.outcome(f"finished in {r.seconds:.0f}s: {one_line(note)}", c.repro())


# --- persona.yaml / build.yaml ---------------------------------------------------------------------------

def _character(c: Ctx, name: str) -> Path:
    """A fresh KIT_HOME with datasets/NAME copied from bajie; returns the KIT_HOME."""
    kh = c.fx.tmp("kithome")
    shutil.copytree(c.fx.kh / "datasets" / "bajie", kh / "datasets" / name)
    return kh


def _edit(path: Path, old: str | None, new: str) -> None:
    text = path.read_text()
    if old is None:
        text = text.rstrip("\n") + "\n" + new + "\n"
    else:
        assert old in text, (path, old)
        text = text.replace(old, new, 1)
    path.write_text(text)


def _line_of(path: Path, needle: str) -> int:
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return i
    return 0


def _build_refusal(c: Ctx, file: str, old: str | None, new: str, needle: str, names: list[str] = (),
                   character: str = "bajie", cmd: str = "build", exact_line: bool = True) -> Outcome:
    kh = _character(c, character)
    folder = kh / "datasets" / character
    path = folder / file
    _edit(path, old, new)
    line = _line_of(path, needle)
    f = Findings()
    args = ["data", "build", character, "-o", kh / "built"] if cmd == "build" else \
        ["data", "extract", folder / "sources" / "script.txt", "--character", character, "-o", kh / "x.jsonl"]
    before = snapshot(folder)
    r = c.kit(args, env={"KIT_HOME": str(kh)})
    # A YAML syntax error is reported where the parser noticed it, maybe a line after the edit.
    check_refusal(f, r, [f"{path}:{line}" if exact_line else f"{path}:", *names])
    check_kept(f, before, snapshot(folder))
    return f.outcome(f"refused: {one_line(r.out[r.out.find(path.name):], 150)}", c.repro())


@probe("yaml")
def build_require_markers_string(c: Ctx) -> Outcome:
    return _build_refusal(c, "build.yaml", "    weight: 3", '    weight: 3\n    require_markers: "false"',
                          "require_markers", ["require_markers"])


@probe("yaml")
def build_misspelled_key(c: Ctx) -> Outcome:
    return _build_refusal(c, "build.yaml", None, "eval_fractoin: 0.2", "eval_fractoin", ["eval_fraction"])


@probe("yaml")
def build_misspelled_source_key(c: Ctx) -> Outcome:
    return _build_refusal(c, "build.yaml", "    weight: 2\n", "    wieght: 2\n", "wieght", ["weight"])


@probe("yaml")
def build_seed_wrong_type(c: Ctx) -> Outcome:
    return _build_refusal(c, "build.yaml", "seed: 42", 'seed: "forty-two"', "seed:", ["seed"])


@probe("yaml")
def build_weight_negative(c: Ctx) -> Outcome:
    return _build_refusal(c, "build.yaml", "    weight: 3", "    weight: -1", "weight: -1", ["weight"])


@probe("yaml")
def build_eval_fraction_out_of_range(c: Ctx) -> Outcome:
    return _build_refusal(c, "build.yaml", "eval_fraction: 0.1", "eval_fraction: 1.5", "eval_fraction",
                          ["eval_fraction"])


@probe("yaml")
def build_source_file_missing(c: Ctx) -> Outcome:
    return _build_refusal(c, "build.yaml", "sources/novel.txt", "sources/novle.txt", "novle", ["novle.txt"])


@probe("yaml")
def build_duplicate_key(c: Ctx) -> Outcome:
    return _build_refusal(c, "build.yaml", None, "seed: 7", "seed: 7", ["seed"])


@probe("yaml")
def build_format_unknown(c: Ctx) -> Outcome:
    return _build_refusal(c, "build.yaml", "    format: novel", "    format: screenplay", "screenplay",
                          ["screenplay"])


@probe("yaml")
def persona_misspelled_key(c: Ctx) -> Outcome:
    return _build_refusal(c, "persona.yaml", "style_markers:", "style_marker:", "style_marker:",
                          ["style_markers"])


@probe("yaml")
def persona_aliases_wrong_type(c: Ctx) -> Outcome:
    return _build_refusal(c, "persona.yaml", "aliases: [八戒, 猪八戒, 呆子, 悟能, 猪悟能, 天蓬元帅, 老猪, 二师兄]",
                          "aliases: 123", "aliases:", ["aliases"])


@probe("yaml")
def persona_system_prompt_list(c: Ctx) -> Outcome:
    return _build_refusal(c, "persona.yaml", "system_prompt: >-", "system_prompt: [a, b]\nold_prompt: >-",
                          "system_prompt:", ["system_prompt"])


@probe("yaml")
def persona_empty_probe_questions(c: Ctx) -> Outcome:
    """probe_questions is required (docs/persona.md): an empty list is refused with its line."""
    kh = _character(c, "bajie")
    path = kh / "datasets" / "bajie" / "persona.yaml"
    text = path.read_text()
    head, tail = text.split("probe_questions:\n", 1)
    rest = tail.split("\n")
    while rest and rest[0].startswith("  - "):
        rest.pop(0)
    path.write_text(head + "probe_questions: []\n" + "\n".join(rest))
    line = _line_of(path, "probe_questions:")
    f = Findings()
    r = c.kit(["data", "build", "bajie", "-o", kh / "built"], env={"KIT_HOME": str(kh)})
    check_refusal(f, r, [f"{path}:{line}", "probe_questions"])
    return f.outcome(f"refused: {one_line(r.out[r.out.find(path.name):], 150)}", c.repro())


@probe("yaml")
def persona_syntax_error(c: Ctx) -> Outcome:
    return _build_refusal(c, "persona.yaml", "topics: [", "topics: [[", "topics:", ["YAML"], exact_line=False)


@probe("yaml")
def persona_copied_character_bajie(c: Ctx) -> Outcome:
    return _build_refusal(c, "persona.yaml", "character: bajie", "character: bajie", "character:",
                          ["wukong", "bajie"], character="wukong")


@probe("yaml")
def persona_copied_character_bajie_extract(c: Ctx) -> Outcome:
    return _build_refusal(c, "persona.yaml", "character: bajie", "character: bajie", "character:",
                          ["wukong"], character="wukong", cmd="extract")


@probe("yaml")
def persona_missing_name(c: Ctx) -> Outcome:
    kh = _character(c, "bajie")
    path = kh / "datasets" / "bajie" / "persona.yaml"
    path.write_text("\n".join(l for l in path.read_text().splitlines() if not l.startswith("name:")) + "\n")
    f = Findings()
    r = c.kit(["data", "build", "bajie", "-o", kh / "built"], env={"KIT_HOME": str(kh)})
    check_refusal(f, r, [str(path), "name"])
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


@probe("yaml")
def build_ok_and_out_onto_sources_refused(c: Ctx) -> Outcome:
    """An untouched copy builds (expected success); -o onto its own sources/ folder must not eat them."""
    kh = _character(c, "bajie")
    folder = kh / "datasets" / "bajie"
    f = Findings()
    r = c.kit(["data", "build", "bajie", "-o", kh / "built"], env={"KIT_HOME": str(kh)}, timeout=180)
    check_success(f, r)
    n = len((kh / "built" / "train.jsonl").read_text().splitlines()) if (kh / "built" / "train.jsonl").is_file() else 0
    before = snapshot(folder / "sources")
    r2 = c.kit(["data", "build", "bajie", "-o", folder / "sources"], env={"KIT_HOME": str(kh)}, timeout=180)
    check_kept(f, before, snapshot(folder / "sources"))
    if r2.rc != 0:
        check_refusal(f, r2, [str(folder / "sources")])
    return f.outcome(f"built {n} train samples; -o sources/: rc {r2.rc}, sources intact: "
                     f"{message_line(r2.out)}", c.repro())


# --- kit data check -------------------------------------------------------------------------------------

SYS = "你是猪八戒。"


def _sample(reply: str = "俺老猪来也！", loss=None, user: str = "你是谁？") -> str:
    a = {"role": "assistant", "content": reply}
    if loss is not None:
        a["loss"] = loss
    return json.dumps({"messages": [{"role": "system", "content": SYS}, {"role": "user", "content": user}, a]},
                      ensure_ascii=False)


def _check(c: Ctx, lines: list[str], expect: str, bad_line: int | None = None, names: list[str] = (),
           raw: bytes | None = None) -> Outcome:
    """expect: 'error' (rc != 0, FILE:LINE), 'warning' (rc 0 and a warning naming the lines), 'ok'."""
    d = c.fx.tmp("check")
    p = d / "train.jsonl"
    if raw is not None:
        p.write_bytes(raw)
    else:
        p.write_text("".join(l + "\n" for l in lines))
    before = snapshot(p)
    f = Findings()
    r = c.kit(["data", "check", p])
    if expect == "error":
        # documented: every problem as FILE:LINE: reason (the reason says the fix), exit 1 (docs/data.md)
        check_refusal(f, r, [f"{p}:{bad_line or 1}", *names], code=1, fix=False)
    elif expect == "warning":
        check_success(f, r)
        if "warn" not in r.out.lower():
            f.add("wrong", f"no warning: {message_line(r.out)}")
        for n in names:
            if flat(n) not in flat(r.out):
                f.add("unclear", f"warning does not name {n}")
    else:
        check_success(f, r)
    check_kept(f, before, snapshot(p))
    ev = next((l.strip() for l in r.out.splitlines() if f"{p.name}:" in l or "warn" in l.lower()), message_line(r.out))
    return f.outcome(f"rc {r.rc}: {one_line(ev.replace(str(d) + '/', ''), 150)}", c.repro())


@probe("check")
def check_duplicates_warn(c: Ctx) -> Outcome:
    return _check(c, [_sample(), _sample("猴哥救命！"), _sample()], "warning", names=["3"])


@probe("check")
def check_only_reply_loss_false(c: Ctx) -> Outcome:
    return _check(c, [_sample(), _sample("师父歇歇吧", loss=False)], "error", 2, ["loss"])


@probe("check")
def check_loss_string_false(c: Ctx) -> Outcome:
    return _check(c, [_sample(), _sample("师父歇歇吧", loss="false")], "error", 2, ["loss"])


@probe("check")
def check_bad_json_line(c: Ctx) -> Outcome:
    return _check(c, [_sample(), '{"messages": [', _sample("嘿嘿")], "error", 2)


@probe("check")
def check_missing_messages(c: Ctx) -> Outcome:
    return _check(c, [_sample(), json.dumps({"conversation": []})], "error", 2, ["messages"])


@probe("check")
def check_unknown_role(c: Ctx) -> Outcome:
    bad = json.dumps({"messages": [{"role": "system", "content": SYS}, {"role": "bot", "content": "hi"}]})
    return _check(c, [bad], "error", 1, ["bot"])


@probe("check")
def check_no_assistant_turn(c: Ctx) -> Outcome:
    bad = json.dumps({"messages": [{"role": "system", "content": SYS}, {"role": "user", "content": "在吗"}]},
                     ensure_ascii=False)
    return _check(c, [_sample(), bad], "error", 2)


@probe("check")
def check_empty_file(c: Ctx) -> Outcome:
    return _check(c, [], "error")


@probe("check")
def check_not_utf8(c: Ctx) -> Outcome:
    return _check(c, [], "error", 2, raw=(_sample() + "\n").encode() + _sample("师父饿了").encode("gbk") + b"\n")


@probe("check")
def check_demo_train_ok(c: Ctx) -> Outcome:
    return _check(c, (c.fx.demo / "data" / "train.jsonl").read_text().splitlines()[:50], "ok")


@probe("check")
def check_with_misspelled_persona(c: Ctx) -> Outcome:
    kh = _character(c, "bajie")
    persona = kh / "datasets" / "bajie" / "persona.yaml"
    _edit(persona, "catchphrases:", "catchphrase:")
    line = _line_of(persona, "catchphrase:")
    f = Findings()
    r = c.kit(["data", "check", c.fx.demo / "data" / "eval.jsonl", "--persona", persona])
    check_refusal(f, r, [f"{persona}:{line}", "catchphrases"])
    return f.outcome(f"refused: {one_line(r.out[r.out.find(persona.name):], 150)}", c.repro())


@probe("check")
def check_file_missing(c: Ctx) -> Outcome:
    f = Findings()
    r = c.kit(["data", "check", "/nonexistent/train.jsonl"])
    check_refusal(f, r, ["/nonexistent/train.jsonl"])
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


# --- kit eval -------------------------------------------------------------------------------------------

def _eval_args(c: Ctx, base: str, tuned: str, out: Path, extra: list = ()) -> list:
    return ["eval", "--base", base, "--tuned", tuned, "--character", "bajie", "--eval-file", c.fx.eval_file,
            "--out", out, "--gen-limit", "1", "--ppl-limit", "1", "--max-new-tokens", "4", *extra]


def _eval_report(out: Path) -> dict:
    try:
        return json.loads((out / "report.json").read_text())
    except (OSError, ValueError):
        return {}


@probe("eval")
def eval_env_key_not_sent_without_flag(c: Ctx) -> Outcome:
    api, f = FakeAPI("ok"), Findings()
    out = c.fx.tmp("eval") / "report"
    r = c.kit(_eval_args(c, api.url + "#m", api.url + "#m", out), env={"KIT_HOME": str(c.fx.kh)}, timeout=240)
    if r.rc != 0:
        check_refusal(f, r, [api.url])
    if not api.requests:
        f.add("unclear", "the fake server got no request: probe inconclusive")
    if KEY in api.header_values():
        f.add("leak", f"$OPENAI_API_KEY sent to {api.url} without --api-key-env")
    if ORG in api.header_values():
        f.add("leak", "$OPENAI_ORG_ID sent")
    check_no_key(f, r, [out.parent], c.name)
    auths = sorted(set(api.auths()))
    api.close()
    return f.outcome(f"rc {r.rc}; {len(api.requests)} requests, Authorization seen: {auths}", c.repro())


@probe("eval")
def eval_named_key_reaches_only_its_server(c: Ctx) -> Outcome:
    api, judge, f = FakeAPI("ok"), FakeAPI("ok"), Findings()
    out = c.fx.tmp("eval") / "report"
    r = c.kit(_eval_args(c, api.url + "#m", api.url + "#m", out,
                         ["--api-key-env", "KIT_PROBE_KEY", "--judge-url", judge.url, "--judge-model", "m"]),
              env={"KIT_HOME": str(c.fx.kh)}, timeout=240)
    check_success(f, r)
    if api.requests and not all(a == f"Bearer {KEY}" for a in api.auths()):
        f.add("wrong", f"the named key did not reach its server: {set(api.auths())}")
    if KEY in judge.header_values():
        f.add("leak", "the models' key was sent to the judge")
    check_no_key(f, r, [out.parent], c.name)
    api.close()
    judge.close()
    return f.outcome(f"rc {r.rc}; models got Bearer $KIT_PROBE_KEY, judge got {sorted(set(judge.auths()))}",
                     c.repro())


@probe("eval")
def eval_key_to_other_host_plain_http(c: Ctx) -> Outcome:
    f = Findings()
    out = c.fx.tmp("eval") / "report"
    url = "http://10.0.0.1:9/v1"
    r = c.kit(_eval_args(c, url, url, out, ["--api-key-env", "KIT_PROBE_KEY"]), env={"KIT_HOME": str(c.fx.kh)},
              timeout=90)
    check_refusal(f, r, [url, "KIT_PROBE_KEY"])
    if r.rc != 0 and "plain http" not in r.out:
        f.add("unclear", f"refused, but not for the plain-http key: {message_line(r.out)}")
    if r.seconds > 20:
        f.add("wrong", f"took {r.seconds:.0f}s: it tried to connect before refusing")
    return f.outcome(f"refused in {r.seconds:.1f}s: {message_line(r.out)}", c.repro())


@probe("eval")
def eval_judge_key_to_other_host_plain_http(c: Ctx) -> Outcome:
    api, f = FakeAPI("ok"), Findings()
    out = c.fx.tmp("eval") / "report"
    url = "http://10.0.0.1:9/v1"
    r = c.kit(_eval_args(c, api.url + "#m", api.url + "#m", out,
                         ["--judge-url", url, "--judge-model", "j", "--judge-key-env", "KIT_PROBE_KEY"]),
              env={"KIT_HOME": str(c.fx.kh)}, timeout=90)
    check_refusal(f, r, [url, "KIT_PROBE_KEY"])
    if r.seconds > 25:
        f.add("wrong", f"took {r.seconds:.0f}s: it tried to connect before refusing")
    api.close()
    return f.outcome(f"refused in {r.seconds:.1f}s: {message_line(r.out)}", c.repro())


@probe("eval")
def eval_dead_url(c: Ctx) -> Outcome:
    f = Findings()
    out = c.fx.tmp("eval") / "report"
    url = f"http://127.0.0.1:{free_port()}/v1"
    r = c.kit(_eval_args(c, url, url, out), env={"KIT_HOME": str(c.fx.kh)}, timeout=120)
    check_refusal(f, r, [url])
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


@probe("eval")
def eval_judge_dead_url(c: Ctx) -> Outcome:
    api, f = FakeAPI("ok"), Findings()
    out = c.fx.tmp("eval") / "report"
    url = f"http://127.0.0.1:{free_port()}/v1"
    r = c.kit(_eval_args(c, api.url + "#m", api.url + "#m", out, ["--judge-url", url, "--judge-model", "j"]),
              env={"KIT_HOME": str(c.fx.kh)})
    check_refusal(f, r, [url, "--judge-url"])
    api.close()
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


@probe("eval")
def eval_server_wants_key(c: Ctx) -> Outcome:
    api, f = FakeAPI("401"), Findings()
    out = c.fx.tmp("eval") / "report"
    r = c.kit(_eval_args(c, api.url + "#m", api.url + "#m", out), env={"KIT_HOME": str(c.fx.kh)})
    check_refusal(f, r, [api.url, "--api-key-env"])
    if KEY in api.header_values():
        f.add("leak", "$OPENAI_API_KEY sent")
    api.close()
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


@probe("eval")
def eval_named_key_unset(c: Ctx) -> Outcome:
    api, f = FakeAPI("ok"), Findings()
    out = c.fx.tmp("eval") / "report"
    r = c.kit(_eval_args(c, api.url + "#m", api.url + "#m", out, ["--api-key-env", "KIT_PROBE_UNSET_VAR"]),
              env={"KIT_HOME": str(c.fx.kh)})
    check_refusal(f, r, ["KIT_PROBE_UNSET_VAR"])
    api.close()
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


def _judge_probe(c: Ctx, mode: str) -> Outcome:
    api, judge, f = FakeAPI("ok"), FakeAPI(mode), Findings()
    out = c.fx.tmp("eval") / "report"
    r = c.kit(_eval_args(c, api.url + "#m", api.url + "#m", out, ["--judge-url", judge.url, "--judge-model", "j"]),
              env={"KIT_HOME": str(c.fx.kh)}, timeout=240)
    check_success(f, r)
    rep = _eval_report(out)
    judge_entry = (rep.get("metrics") or {}).get("llm_judge") or {}
    values = [judge_entry.get(s) for s in ("base", "tuned")]
    reasons = [((judge_entry.get("details") or {}).get(s) or {}).get("reason") for s in ("base", "tuned")]
    if r.rc == 0 and not rep:
        f.add("wrong", "no report.json")
    elif r.rc == 0 and any(v is not None for v in values):
        f.add("wrong", f"a judge score was recorded from answers without one: {values}")
    elif r.rc == 0 and not all(reasons):
        f.add("unclear", f"judge n/a without a reason in report.json: {reasons}")
    if not judge.requests:
        f.add("unclear", "the judge got no request: probe inconclusive")
    api.close()
    judge.close()
    return f.outcome(f"rc {r.rc}; judge n/a: {one_line(str(reasons[1] or reasons[0]), 120)}", c.repro())


@probe("eval")
def eval_judge_answers_non_json_body(c: Ctx) -> Outcome:
    return _judge_probe(c, "judge_raw")


@probe("eval")
def eval_judge_answers_without_score(c: Ctx) -> Outcome:
    return _judge_probe(c, "judge_text")


@probe("eval")
def eval_base_nonexistent(c: Ctx) -> Outcome:
    f = Findings()
    out = c.fx.tmp("eval") / "report"
    r = c.kit(_eval_args(c, "/nonexistent/base", str(c.fx.merged), out), env={"KIT_HOME": str(c.fx.kh)})
    check_refusal(f, r, ["/nonexistent/base"])
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


@probe("eval")
def eval_tuned_nonexistent(c: Ctx) -> Outcome:
    f = Findings()
    out = c.fx.tmp("eval") / "report"
    r = c.kit(_eval_args(c, str(c.fx.base), "/nonexistent/tuned", out), env={"KIT_HOME": str(c.fx.kh)})
    check_refusal(f, r, ["/nonexistent/tuned"])
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


@probe("eval")
def eval_eval_file_nonexistent(c: Ctx) -> Outcome:
    f = Findings()
    out = c.fx.tmp("eval") / "report"
    args = _eval_args(c, str(c.fx.base), str(c.fx.merged), out)
    args[args.index("--eval-file") + 1] = "/nonexistent/eval.jsonl"
    r = c.kit(args, env={"KIT_HOME": str(c.fx.kh)})
    check_refusal(f, r, ["/nonexistent/eval.jsonl"])
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


@probe("eval")
def eval_out_is_a_file(c: Ctx) -> Outcome:
    api, f = FakeAPI("ok"), Findings()
    p = c.fx.tmp("eval") / "notes.txt"
    p.write_text("keep me\n")
    before = snapshot(p)
    r = c.kit(_eval_args(c, api.url + "#m", api.url + "#m", p), env={"KIT_HOME": str(c.fx.kh)})
    check_refusal(f, r, [str(p)])
    check_kept(f, before, snapshot(p))
    api.close()
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


# --- kit serve, quantize, the LMDeploy plan ------------------------------------------------------------------

LMDEPLOY_PLAN = r"""
import json, os, sys
from pathlib import Path
from kit.serve import lmdeploy_cmd as lm
from kit.serve.plan import plan_servers
from kit.serve.settings import ServeSettings
tuned = Path(sys.argv[1]); base = Path(sys.argv[2])
settings = ServeSettings(engine="lmdeploy", port=24000, character="bajie", api_key_env="KIT_PROBE_KEY",
                         backend="pytorch")
plans = plan_servers({"base": base, "tuned": tuned}, settings, free_mib=20000, python=Path(sys.executable))
direct = lm.api_server_command(Path(sys.executable), lm.ApiServer("tuned", tuned, 24001, 0.5),
                               Path(sys.argv[3]), api_key_env="KIT_PROBE_KEY")
print(json.dumps({"plans": [p.cmd for p in plans], "direct": direct}))
"""


@probe("serve")
def serve_lmdeploy_plan_has_no_key(c: Ctx) -> Outcome:
    """kit serve --engine lmdeploy --api-key-env V: the planned commands (built in-process, as
    tests/serve/test_lmdeploy_plan.py does; LMDeploy is not installed here) carry V's name, not its value."""
    f = Findings()
    d = c.fx.tmp("lmplan")
    cmd = [PY, "-c", LMDEPLOY_PLAN, str(c.fx.merged), str(c.fx.base), str(d / "t.json")]
    r = run_cmd(cmd, c.fx.env.make({"KIT_CACHE": str(d)}), d, 120)
    c.last_cmd, c.last_env = cmd, None
    if r.rc != 0:
        f.add("unclear", f"could not build the plan: {one_line(r.out[-300:])}")
        return f.outcome("", "see bench/break_probes.py LMDEPLOY_PLAN")
    plans = json.loads(r.out.strip().splitlines()[-1])
    cmds = [*plans["plans"], plans["direct"]]
    if any(KEY in " ".join(cmd) for cmd in cmds):
        f.add("leak", "the key value is in LMDeploy's planned command line")
    if not all("KIT_PROBE_KEY" in cmd for cmd in cmds):
        f.add("wrong", "the plan does not pass the key's variable name (LMDeploy would run without a key)")
    check_no_key(f, r, [d], c.name)
    return f.outcome(f"{len(cmds)} commands carry --arg-from-env --api-keys KIT_PROBE_KEY, never the value",
                     "(in-process) bench/break_probes.py LMDEPLOY_PLAN")


@probe("serve")
def serve_lmdeploy_on_cpu(c: Ctx) -> Outcome:
    f = Findings()
    r = c.kit(["serve", "--engine", "lmdeploy", "--no-ui", "--tuned", c.fx.merged, "--port", free_port(),
               "--api-key-env", "KIT_PROBE_KEY"], timeout=120)
    check_refusal(f, r, ["LMDeploy"])
    check_no_key(f, r, probe=c.name)
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


@probe("serve")
def serve_tuned_nonexistent(c: Ctx) -> Outcome:
    f = Findings()
    r = c.kit(["serve", "--engine", "transformers", "--no-ui", "--tuned", "/nonexistent/tuned",
               "--port", free_port()], timeout=120)
    check_refusal(f, r, ["/nonexistent/tuned"])
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


@probe("serve")
def serve_tuned_not_a_model(c: Ctx) -> Outcome:
    f = Findings()
    d = _user_folder(c)
    before = snapshot(d)
    r = c.kit(["serve", "--engine", "transformers", "--no-ui", "--tuned", d, "--port", free_port()], timeout=120)
    check_refusal(f, r, [str(d)])
    check_kept(f, before, snapshot(d))
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


@probe("serve")
def serve_base_nonexistent(c: Ctx) -> Outcome:
    f = Findings()
    r = c.kit(["serve", "--engine", "transformers", "--no-ui", "--base", "/nonexistent/base",
               "--tuned", c.fx.merged, "--port", free_port()], timeout=120)
    check_refusal(f, r, ["/nonexistent/base"])
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


@probe("serve")
def serve_port_in_use(c: Ctx) -> Outcome:
    f = Findings()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = c.kit(["serve", "--engine", "transformers", "--no-ui", "--tuned", c.fx.merged, "--port", port],
                  timeout=120)
    check_refusal(f, r, [str(port), "--port"])
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


@probe("serve")
def serve_api_key_env_unset(c: Ctx) -> Outcome:
    f = Findings()
    r = c.kit(["serve", "--engine", "transformers", "--no-ui", "--tuned", c.fx.merged, "--port", free_port(),
               "--api-key-env", "KIT_PROBE_UNSET_VAR"], timeout=120)
    check_refusal(f, r, ["KIT_PROBE_UNSET_VAR"])
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


def _children(pid: int) -> set[int]:
    """All live descendants of pid."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


def _http(port: int, method: str, path: str, body=None, key: str | None = None, timeout: float = 60,
          raw: bytes | None = None) -> tuple[int, dict | str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        text = resp.read().decode(errors="replace")
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text
    finally:
        conn.close()


def _wait_up(port: int, seconds: float, key: str | None = None, proc=None) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            status, _ = _http(port, "GET", "/health", key=key, timeout=2)
            if status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


@probe("serve", slow=True)
def serve_sigkill_leaves_no_child(c: Ctx) -> Outcome:
    """kit serve (transformers, --no-ui, --api-key-env) SIGKILLed: its server child dies with it, the port is
    free within 10 s; while it ran, no process's command line held the key."""
    f = Findings()
    port = free_port()
    cmd = [KIT, "serve", "--engine", "transformers", "--no-ui", "--tuned", str(c.fx.merged), "--port", str(port),
           "--api-key-env", "KIT_PROBE_SERVE_KEY"]
    c.last_cmd, c.last_env = cmd, {"KIT_PROBE_SERVE_KEY": "..."}
    log = c.fx.tmp("serve") / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=c.fx.root, env=c.fx.env.make({"KIT_PROBE_SERVE_KEY": SERVE_KEY}),
                                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        if not _wait_up(port, 120, proc=proc):
            f.add("unclear", f"kit serve did not come up: {message_line(log.read_text())}")
            return f.outcome("", c.repro())
        status, _ = _http(port, "GET", "/v1/models")
        if status != 401:
            f.add("wrong", f"/v1/models without the key answered {status}, not 401")
        status, _ = _http(port, "GET", "/v1/models", key=SERVE_KEY)
        if status != 200:
            f.add("wrong", f"/v1/models with the key answered {status}")
        kids = _children(proc.pid)
        WATCHER.scan()
        if not kids:
            f.add("unclear", "kit serve has no child process: probe inconclusive")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        t0, left, free = time.monotonic(), set(kids), False
        while time.monotonic() - t0 < 10:
            left = {k for k in kids if _alive(k)}
            free = port_free(port)
            if not left and free:
                break
            time.sleep(0.2)
        took = time.monotonic() - t0
        if left:
            cmds = [Path(f"/proc/{k}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:80] for k in left]
            f.add("wrong", f"{len(left)} child process(es) alive 10 s after SIGKILL: {cmds}")
            for k in left:  # ours: clean up
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        elif not free:
            f.add("wrong", f"port {port} still taken 10 s after SIGKILL")
        check_no_key(f, None, [log.parent], c.name)
        if SERVE_KEY in log.read_text(errors="replace"):
            f.add("leak", "the key is in kit serve's output")
        return f.outcome(f"{len(kids)} child(ren) gone and port free {took:.1f}s after SIGKILL; "
                         "401 without key", c.repro())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@probe("serve")
def quantize_nonexistent(c: Ctx) -> Outcome:
    f = Findings()
    r = c.kit(["quantize", "/nonexistent/model"])
    check_refusal(f, r, ["/nonexistent/model"])
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


@probe("serve")
def quantize_on_cpu_without_lmdeploy(c: Ctx) -> Outcome:
    f = Findings()
    out = c.fx.tmp("quant") / "q"
    r = c.kit(["quantize", c.fx.merged, "-o", out])
    check_refusal(f, r, [])
    if r.rc != 0 and not any(w in r.out for w in ("GPU", "LMDeploy", "lmdeploy", "CUDA")):
        f.add("unclear", f"does not say GPU/LMDeploy is what is missing: {message_line(r.out)}")
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


# --- the embedded server -----------------------------------------------------------------------------

class Embedded:
    """One `python -m kit.serve.hf_server` for all the HTTP probes, with --api-key-env."""

    proc: subprocess.Popen | None = None
    port = 0
    log: Path | None = None
    baseline_threads = 0

    @classmethod
    def start(cls, fx: Fixture) -> str | None:
        if cls.proc is not None:
            return None if cls.proc.poll() is None else "the embedded server died"
        cls.port = free_port()
        cls.log = fx.tmp("hfserver") / "server.log"
        cmd = [PY, "-m", "kit.serve.hf_server", "--model", f"tuned={fx.merged}",
               "--model", f"endless={fx.endless_model()}", "--port", str(cls.port),
               "--api-key-env", "KIT_PROBE_SERVE_KEY"]
        with open(cls.log, "wb") as fh:
            cls.proc = subprocess.Popen(cmd, cwd=fx.root, env=fx.env.make({"KIT_PROBE_SERVE_KEY": SERVE_KEY}),
                                        stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if not _wait_up(cls.port, 120, proc=cls.proc):
            return f"the embedded server did not start: {message_line(cls.log.read_text())}"
        for _ in range(2):  # warm up: the worker pool's threads exist before the baseline
            cls.chat({"max_tokens": 4})
        time.sleep(0.5)
        cls.baseline_threads = cls.threads()
        return None

    @classmethod
    def stop(cls) -> None:
        if cls.proc is not None and cls.proc.poll() is None:
            cls.proc.terminate()
            try:
                cls.proc.wait(15)
            except subprocess.TimeoutExpired:
                cls.proc.kill()
                cls.proc.wait()

    @classmethod
    def threads(cls) -> int:
        return len(os.listdir(f"/proc/{cls.proc.pid}/task"))

    @classmethod
    def cpu(cls) -> float:
        fields = Path(f"/proc/{cls.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @classmethod
    def chat(cls, extra: dict | None = None, *, drop: tuple = (), key: str | None = SERVE_KEY,
             raw: bytes | None = None, path: str = "/v1/chat/completions") -> tuple[int, dict | str]:
        body = {"model": "tuned", "messages": [{"role": "user", "content": "你是谁？"}], "max_tokens": 8}
        body.update(extra or {})
        for k in drop:
            body.pop(k, None)
        return _http(cls.port, "POST", path, body, key=key, raw=raw)

    @classmethod
    def settled(cls, seconds: float = 5) -> tuple[int, float]:
        """(threads, CPU seconds used over 1 s) once the thread count is back to the baseline or after
        `seconds`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and cls.threads() > cls.baseline_threads:
            time.sleep(0.2)
        c0 = cls.cpu()
        time.sleep(1.0)
        return cls.threads(), cls.cpu() - c0


def _openai_error(f: Findings, status: int, body, want_status: int, param: str | None) -> None:
    if status != want_status:
        f.add("wrong" if status == 200 else "unclear", f"HTTP {status}, not {want_status}: {one_line(str(body), 120)}")
        return
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict) or not {"message", "type", "param", "code"} <= set(err):
        f.add("unclear", f"not an OpenAI error object: {one_line(str(body), 120)}")
        return
    if param is not None and err.get("param") != param:
        f.add("unclear", f"param is {err.get('param')!r}, not {param!r}: {one_line(err.get('message', ''), 100)}")
    if param is not None and param.split("[")[0] not in str(err.get("message")):
        f.add("unclear", f"message does not name {param}: {err.get('message')}")


def _server_probe(c: Ctx, send: Callable[[], tuple[int, dict | str]], want: int, param: str | None,
                  repeat: int = 1) -> Outcome:
    f = Findings()
    problem = Embedded.start(c.fx)
    if problem:
        f.add("unclear", problem)
        return f.outcome("", "")
    status, body = 0, ""
    for _ in range(repeat):
        try:
            status, body = send()
        except (OSError, http.client.HTTPException) as e:
            f.add("wrong", f"no answer: {type(e).__name__}: {e}")
            return f.outcome("", "")
    _openai_error(f, status, body, want, param) if want != 200 else (
        status != 200 and f.add("wrong", f"HTTP {status}: {one_line(str(body), 120)}"))
    threads, busy = Embedded.settled()
    if threads > Embedded.baseline_threads + 1:
        f.add("wrong", f"threads {Embedded.baseline_threads} -> {threads} after the request(s)")
    if busy > 0.5:
        f.add("wrong", f"the server keeps computing after answering ({busy:.2f} CPU-s in 1 s)")
    msg = body["error"]["message"] if isinstance(body, dict) and "error" in body else (
        "ok" if status == 200 else str(body))
    return f.outcome(f"HTTP {status} param={param!r}: {one_line(msg, 100)}; threads "
                     f"{Embedded.baseline_threads}->{threads}", f"curl -s localhost:PORT/v1/chat/completions "
                     f"(server: python -m kit.serve.hf_server --model tuned={c.fx.demo_src}/merged --port PORT)")


def _server_field(field_: str, value, want: int = 400, param: str | None = None, repeat: int = 1):
    def fn(c: Ctx) -> Outcome:
        return _server_probe(c, lambda: Embedded.chat({field_: value}), want, param or field_, repeat)
    return fn


for _name, _field, _value, _want, _rep in [
    ("server_seed_2pow64", "seed", 2**64, 400, 3),
    ("server_seed_2pow70", "seed", 2**70, 400, 3),
    ("server_seed_negative", "seed", -1, 400, 1),
    ("server_seed_string", "seed", "abc", 400, 1),
    ("server_max_tokens_0", "max_tokens", 0, 400, 1),
    ("server_max_tokens_negative", "max_tokens", -5, 400, 1),
    ("server_temperature_5", "temperature", 5, 400, 1),
    ("server_top_p_2", "top_p", 2, 400, 1),
    ("server_top_p_0", "top_p", 0, 400, 1),
    ("server_n_3", "n", 3, 400, 1),
    ("server_stop_wrong_type", "stop", 5, 400, 1),
    ("server_max_completion_tokens_0", "max_completion_tokens", 0, 400, 1),
    ("server_top_k_negative", "top_k", -1, 400, 1),
    ("server_temperature_string", "temperature", "hot", 400, 1),
]:
    _fn = _server_field(_field, _value, _want, None, _rep)
    _fn.__name__ = _name
    probe("server")(_fn)


@probe("server")
def server_seed_max_64bit_ok(c: Ctx) -> Outcome:
    return _server_probe(c, lambda: Embedded.chat({"seed": 2**64 - 1}), 200, None)


@probe("server")
def server_valid_chat_ok(c: Ctx) -> Outcome:
    return _server_probe(c, lambda: Embedded.chat({"seed": 1}), 200, None)


@probe("server")
def server_invalid_json(c: Ctx) -> Outcome:
    return _server_probe(c, lambda: Embedded.chat(raw=b'{"model": "tuned", "messages": [}'), 400, None)


@probe("server")
def server_body_is_a_list(c: Ctx) -> Outcome:
    return _server_probe(c, lambda: Embedded.chat(raw=b'[1, 2]'), 400, None)


@probe("server")
def server_missing_messages(c: Ctx) -> Outcome:
    return _server_probe(c, lambda: Embedded.chat(drop=("messages",)), 400, "messages")


@probe("server")
def server_empty_messages(c: Ctx) -> Outcome:
    return _server_probe(c, lambda: Embedded.chat({"messages": []}), 400, "messages")


@probe("server")
def server_bad_role(c: Ctx) -> Outcome:
    return _server_probe(c, lambda: Embedded.chat({"messages": [{"role": "bot", "content": "hi"}]}), 400,
                         "messages[0]")


@probe("server")
def server_unknown_model(c: Ctx) -> Outcome:
    return _server_probe(c, lambda: Embedded.chat({"model": "gpt-4"}), 404, "model")


@probe("server")
def server_no_key_401(c: Ctx) -> Outcome:
    return _server_probe(c, lambda: Embedded.chat(key=None), 401, None)


@probe("server")
def server_wrong_key_401(c: Ctx) -> Outcome:
    return _server_probe(c, lambda: Embedded.chat(key="sk-wrong"), 401, None)


@probe("server")
def server_completion_over_context(c: Ctx) -> Outcome:
    """OpenAI itself answers this with param null (code context_length_exceeded): the message must name
    max_tokens."""
    out = _server_probe(c, lambda: Embedded.chat({"prompt": "你好", "max_tokens": 10**6}, drop=("messages",),
                                                 path="/v1/completions"), 400, None)
    if out.cls == "clean" and "max_tokens" not in out.evidence:
        return Outcome("unclear", f"does not name max_tokens: {out.evidence}", out.repro)
    return out


@probe("server")
def server_completion_stream_refused(c: Ctx) -> Outcome:
    return _server_probe(c, lambda: Embedded.chat({"prompt": "你好", "stream": True}, drop=("messages",),
                                                  path="/v1/completions"), 400, "stream")


@probe("server")
def server_completion_logprobs_9(c: Ctx) -> Outcome:
    return _server_probe(c, lambda: Embedded.chat({"prompt": "你好", "logprobs": 9}, drop=("messages",),
                                                  path="/v1/completions"), 400, "logprobs")


@probe("server")
def server_key_not_in_cmdline(c: Ctx) -> Outcome:
    f = Findings()
    problem = Embedded.start(c.fx)
    if problem:
        f.add("unclear", problem)
        return f.outcome("", "")
    cmd = Path(f"/proc/{Embedded.proc.pid}/cmdline").read_bytes()
    if SERVE_KEY.encode() in cmd:
        f.add("leak", "the key is in the server's /proc/PID/cmdline")
    if SERVE_KEY in Embedded.log.read_text(errors="replace"):
        f.add("leak", "the key is in the server's log")
    return f.outcome("cmdline names KIT_PROBE_SERVE_KEY only; log holds no key", "")


def _disconnect(c: Ctx, stream: bool) -> Outcome:
    """Ask for a long generation, read a little, hang up: generation must stop (CPU idle, threads back)."""
    f = Findings()
    problem = Embedded.start(c.fx)
    if problem:
        f.add("unclear", problem)
        return f.outcome("", "")
    body = json.dumps({"model": "endless", "messages": [{"role": "user", "content": "讲一个很长很长的故事"}],
                       "max_tokens": 1500, "temperature": 1.0, "stream": stream}).encode()
    s = socket.create_connection(("127.0.0.1", Embedded.port), timeout=30)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              + f"Authorization: Bearer {SERVE_KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    got = b""
    if stream:
        while got.count(b"data:") < 3:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    c0 = Embedded.cpu()
    time.sleep(1.0)
    generating = Embedded.cpu() - c0  # CPU-s in the second before hang-up: is it generating?
    s.close()
    if stream and b"data:" not in got:
        f.add("unclear", f"no stream chunk came back: {one_line(got.decode(errors='replace'), 120)}")
    done = b"[DONE]" in got
    t0 = time.monotonic()
    threads, busy = Embedded.settled(8)
    took = time.monotonic() - t0 - 1
    if threads > Embedded.baseline_threads + 1:
        f.add("wrong", f"threads {Embedded.baseline_threads} -> {threads} after the client left")
    if busy > 0.5:
        f.add("wrong", f"still generating for nobody ({busy:.2f} CPU-s in 1 s, {took:.0f}s after hang-up)")
    try:
        status, _ = Embedded.chat({"max_tokens": 2})
    except OSError as e:
        status = f"{type(e).__name__}"
    if status != 200:
        f.add("wrong", f"the server does not answer the next request: {status}")
    note = " (generation had already ended: inconclusive)" if done or generating < 0.3 else ""
    return f.outcome(f"hung up after {got.count(b'data:')} chunks while generating ({generating:.2f} CPU-s/s); "
                     f"then idle ({busy:.2f}), threads {threads} (baseline {Embedded.baseline_threads}), "
                     f"next request 200{note}", "")


@probe("server")
def server_client_leaves_mid_stream(c: Ctx) -> Outcome:
    return _disconnect(c, True)


@probe("server")
def server_client_leaves_non_stream(c: Ctx) -> Outcome:
    return _disconnect(c, False)


@probe("server")
def server_bad_model_spec(c: Ctx) -> Outcome:
    f = Findings()
    cmd = [PY, "-m", "kit.serve.hf_server", "--model", "tuned", "--port", str(free_port())]
    r = run_cmd(cmd, c.fx.env.make(), c.fx.root, 60)
    c.last_cmd, c.last_env = cmd, None
    check_refusal(f, r, ["--model", "NAME=PATH"])
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


@probe("server")
def server_model_path_nonexistent(c: Ctx) -> Outcome:
    f = Findings()
    cmd = [PY, "-m", "kit.serve.hf_server", "--model", "tuned=/nonexistent/m", "--port", str(free_port())]
    r = run_cmd(cmd, c.fx.env.make(), c.fx.root, 90)
    c.last_cmd, c.last_env = cmd, None
    check_refusal(f, r, ["/nonexistent/m"])
    return f.outcome(f"refused: {message_line(r.out)}", c.repro())


# --- kit train -----------------------------------------------------------------------------------------

def _train(c: Ctx, extra: list, names: list[str], timeout: float = 90, fast: float = 40) -> Outcome:
    f = Findings()
    wd = c.fx.tmp("train")
    r = c.kit(["train", "bajie", "--cpu", "--work-dir", wd / "work", *extra], cwd=wd, timeout=timeout)
    check_refusal(f, r, names)
    if r.seconds > fast and not r.timed_out:
        f.add("unclear", f"refused only after {r.seconds:.0f}s")
    if list((wd / "work").glob("*.pth")) if (wd / "work").exists() else []:
        f.add("wrong", "a checkpoint was written")
    return f.outcome(f"refused in {r.seconds:.1f}s: {message_line(r.out)}", c.repro(wd))


@probe("train")
def train_base_nonexistent(c: Ctx) -> Outcome:
    return _train(c, ["--base", "/nonexistent/base", "--data-dir", c.fx.demo / "data"], ["/nonexistent/base"])


@probe("train")
def train_base_not_a_model(c: Ctx) -> Outcome:
    d = c.fx.tmp("notamodel")
    (d / "readme.txt").write_text("hi\n")
    return _train(c, ["--base", d, "--data-dir", c.fx.demo / "data"], [str(d)])


@probe("train")
def train_data_dir_nonexistent(c: Ctx) -> Outcome:
    return _train(c, ["--base", c.fx.base, "--data-dir", "/nonexistent/data"], ["/nonexistent/data"])


@probe("train")
def train_data_dir_without_train_jsonl(c: Ctx) -> Outcome:
    d = c.fx.tmp("emptydata")
    return _train(c, ["--base", c.fx.base, "--data-dir", d], [str(d)])


@probe("train")
def train_data_dir_with_bad_data(c: Ctx) -> Outcome:
    d = c.fx.tmp("baddata")
    (d / "train.jsonl").write_text(_sample() + "\n" + _sample("师父", loss=False) + "\n")
    shutil.copy(c.fx.demo / "data" / "eval.jsonl", d / "eval.jsonl")
    return _train(c, ["--base", c.fx.base, "--data-dir", d], [f"{d / 'train.jsonl'}:2"])


@probe("train")
def train_recipe_nonexistent(c: Ctx) -> Outcome:
    f = Findings()
    wd = c.fx.tmp("train")
    r = c.kit(["train", "recipes/nonexistent_recipe.py"], cwd=wd)
    check_refusal(f, r, ["nonexistent_recipe"])
    return f.outcome(f"refused: {message_line(r.out)}", c.repro(wd))


# --- the demo workdir itself ---------------------------------------------------------------------------

DEMO_SNAPSHOT: dict[str, str] = {}


@probe("integrity")
def demo_workdir_untouched(c: Ctx) -> Outcome:
    f = Findings()
    check_kept(f, DEMO_SNAPSHOT, snapshot(c.fx.demo_src))
    added = [p for p in snapshot(c.fx.demo_src) if p not in DEMO_SNAPSHOT]
    if added:
        f.add("wrong", f"{len(added)} path(s) appeared in the demo workdir, e.g. {added[0]}")
    leaks = files_with_key(c.fx.root)
    for p in leaks:
        f.add("leak", f"a key value is written in {p}")
    return f.outcome(f"{len(DEMO_SNAPSHOT)} paths of {c.fx.demo_src} unchanged; no key in any file under the "
                     "probes' temp folder", "")


# ------------------------------------------------------------------------------------------------- main

def _git(*args: str) -> str:
    """The tree the probes ran against (others may be editing the checkout meanwhile)."""
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", type=Path, default=Path("/tmp/kitdemo2/demo"), help="a finished `kit demo` workdir")
    ap.add_argument("--out", type=Path, help="write the counts and per-probe results as JSON here")
    ap.add_argument("--only", nargs="*", default=[], help="run probes whose name or group contains one of these")
    ap.add_argument("--skip-slow", action="store_true", help="skip the slow probes (a full merge, the 60 s "
                    "Retry-After wait, kit serve start/kill)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    console = Console()
    for need in ("base", "data", "work", "merged"):
        if not (args.demo / need).exists():
            console.print(f"error: {args.demo} has no {need}/\nfix: run `kit demo --workdir DIR` and pass --demo DIR")
            return 2
    selected = [p for p in PROBES if (not args.only or any(o in p[0] or o == p[1] for o in args.only))
                and not (args.skip_slow and p[3])]
    root = Path(tempfile.mkdtemp(prefix="kit-break-"))
    fx = Fixture(root, args.demo)
    DEMO_SNAPSHOT.update(snapshot(args.demo))
    fx.setup()
    WATCHER.start()
    results: list[Result] = []
    started = time.monotonic()
    console.print(f"[bold]{len(selected)} probes[/] · temp {root} · demo {args.demo} (copied, never written)")
    try:
        for name, group, fn, _ in selected:
            WATCHER.probe = name
            t0 = time.monotonic()
            c = Ctx(fx, name)
            try:
                o = fn(c)
            except Exception as e:  # a probe's own failure is no finding about kit
                o = Outcome("unclear", f"probe error: {type(e).__name__}: {one_line(str(e), 120)}", "")
                traceback.print_exc()
            WATCHER.scan()
            for _, pid, cmd in WATCHER.hits_for(name):
                if "cmdline" not in o.evidence:
                    o = Outcome("leak", f"a key value is in /proc/{pid}/cmdline: {cmd}", o.repro)
            dt = time.monotonic() - t0
            results.append(Result(name, group, o.cls, one_line(o.evidence, 220), o.repro, round(dt, 1)))
            style = {"clean": "green", "unclear": "yellow"}.get(o.cls, "bold red")
            console.print(f"  [{style}]{o.cls:8}[/] {name:48} {dt:5.1f}s  {one_line(o.evidence, 110)}",
                          markup=True, highlight=False)
            fx.restore_if_changed()
    finally:
        Embedded.stop()
        WATCHER.stop.set()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    counts = {k: sum(r.cls == k for r in results) for k in CLASSES}
    table = Table(title=f"kit break probes (issue 17 re-run) · {len(results)} probes · "
                        f"{time.monotonic() - started:.0f}s", show_lines=False)
    table.add_column("probe", no_wrap=True)
    table.add_column("group")
    table.add_column("class")
    table.add_column("evidence", overflow="fold")
    for r in results:
        style = {"clean": "green", "unclear": "yellow"}.get(r.cls, "bold red")
        table.add_row(r.probe, r.group, f"[{style}]{r.cls}[/]", r.evidence)
    console.print(table)
    console.print("counts: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for r in results:
        if r.cls != "clean":
            console.print(f"[bold]{r.cls}[/] {r.probe}: {r.evidence}\n  reproduce: {r.repro or '(see the probe)'}",
                          highlight=False)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "what": "kit break probes, issue 17 re-run (bench/break_probes.py)",
            "date": time.strftime("%Y-%m-%d"), "host": f"{socket.gethostname()}, {os.cpu_count()} CPUs, no GPU",
            "demo": str(args.demo), "seconds": round(time.monotonic() - started, 1),
            "cmdline_scans": WATCHER.scans, "git_head": _git("rev-parse", "HEAD"),
            "uncommitted_files": _git("status", "--porcelain", "--untracked-files=no").splitlines(),
            "counts": counts,
            "probes": [asdict(r) for r in results]}, ensure_ascii=False, indent=1) + "\n")
        console.print(f"wrote {args.out}")
    return 0 if counts["clean"] == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
