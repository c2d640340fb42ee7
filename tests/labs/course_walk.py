"""The course walked as a participant walks it: every ```bash command of each lab guide, as shown, typed
into one bash session (the participant's terminal), and every expected-output block matched against
what those commands printed.

What a guide says about its own lines (a trailing comment; the walk on a CPU reads it):
  `# GPU…`              runs on a GPU only: skipped, and listed as skipped
  `# API…`              needs an online LLM API and its key: skipped, and listed as skipped
  `# 不用 make 时…`       lab 0's manual set-up, instead of `make env`: skipped (it would replace .venv)
  `# 另开终端…`          typed in a second terminal while the `kit serve` above it keeps running
  `# 换成你的…`          the participant's own choice or file (lab 7): the walk's participant, 孙悟空, types
                        their own line instead (tests/labs/wukong.py)
`kit serve` (not sent to the background with `&`) runs until Ctrl-C: the walk starts it, waits for
`Ctrl-C stops everything.`, types the second-terminal lines, then presses Ctrl-C (SIGINT to its process
group). `xtuner chat` and `kit chat` run on a pseudo-terminal and get typed what the guide's transcript
shows after their prompt (`… >>> 你是谁？`).

An expected-output block is a transcript: `$ COMMAND` (a command of the guide's blocks) and below it
lines that must appear in that command's output, in order, each a whole line. Spaces and the lengths
of table rules are not compared, and `…` stands for any text.
"""

import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from kit_testing import interruptible

TAGS = {"GPU": "gpu", "API": "api", "不用 make": "manual", "without make": "manual", "另开终端": "second terminal",
        "in a second terminal": "second terminal", "换成你的": "yours"}
SKIPPED = {"gpu": "runs on a GPU only", "api": "needs an online LLM API and its key",
           "manual": "the manual set-up instead of make env (it would replace the checkout's .venv)"}
# Interactive programs: their prompt, and the keys that send a typed line (xtuner: a double Enter).
PROMPTS = {"xtuner chat": ("RESET: reset history) >>> ", "\n\n"), "kit chat": ("User >>> ", "\n")}
READY = "Ctrl-C stops everything."
COLUMNS = 160  # the participant's terminal: wide enough for kit's tables
ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07]*\x07|[()][0-9A-B]|[=>])")


class WalkError(AssertionError):
    """The walk stopped: a command failed, hung or left something running, or a guide is malformed."""


@dataclass(frozen=True)
class Command:
    raw: str  # as the guide shows it: continuation lines and the comment included
    line: str  # continuation lines joined, the comment dropped, runs of spaces as one
    comment: str

    @property
    def tag(self) -> str | None:
        return next((tag for prefix, tag in TAGS.items() if self.comment.startswith(prefix)), None)

    @property
    def program(self) -> str:
        return " ".join(self.line.split()[:2])

    @property
    def serves(self) -> bool:
        return self.program == "kit serve" and not self.line.endswith("&")


def squeeze(text: str) -> str:
    return " ".join(text.split())


def split_comment(line: str) -> tuple[str, str]:
    comment = re.search(r"\s#", line)
    return (line[:comment.start()], line[comment.end():].strip()) if comment else (line, "")


def fences(text: str) -> list[tuple[str, str]]:
    """Every fenced block of a Markdown text: (its language, its body)."""
    blocks, language, body = [], None, []
    for line in text.splitlines():
        if line.startswith("```"):
            if language is None:
                language, body = line[3:].strip(), []
            else:
                blocks.append((language, "\n".join(body) + "\n"))
                language = None
        elif language is not None:
            body.append(line)
    return blocks


def guide_commands(text: str) -> list[Command]:
    """Every command of the text's ```bash blocks, in order (comment lines are not commands)."""
    commands = []
    for language, block in fences(text):
        if language != "bash":
            continue
        raw: list[str] = []
        for line in block.splitlines():
            if not raw and (not line.strip() or line.lstrip().startswith("#")):
                continue
            raw.append(line)
            if line.endswith("\\"):
                continue
            code, comment = split_comment(" ".join(part.rstrip("\\") for part in raw))
            commands.append(Command("\n".join(raw), squeeze(code), comment))
            raw = []
    return commands


def sections(text: str) -> tuple[str, str]:
    zh, en = text.index("## 中文"), text.index("## English")
    return text[zh:en], text[en:]


def course_commands(text: str) -> list[Command]:
    """The commands a participant types, each once: the 中文 section's (the English one repeats them)."""
    seen, commands = set(), []
    for command in guide_commands(sections(text)[0]):
        if command.line not in seen:
            seen.add(command.line)
            commands.append(command)
    return commands


@dataclass
class Transcript:
    command: str  # a Command.line
    lines: list[str] = field(default_factory=list)

    def inputs(self) -> list[str]:
        """What the participant types at the command's prompt, in order."""
        prompt = PROMPTS.get(" ".join(self.command.split()[:2]), ("\0",))[0].strip()
        return [line.split(prompt, 1)[1].strip() for line in self.lines if prompt in line]


def transcripts(text: str) -> list[Transcript]:
    """The expected-output blocks (``` fences without a language), one Transcript per `$ COMMAND`."""
    found: list[Transcript] = []
    for language, block in fences(text):
        if language:
            continue
        current, command = None, ""
        for line in block.splitlines():
            if command or line.startswith("$ "):  # `$ COMMAND`, continued on lines that end in `\`
                command += line.removeprefix("$ ").rstrip("\\") + " "
                if not line.endswith("\\"):
                    current, command = Transcript(squeeze(command)), ""
                    found.append(current)
            elif current:
                current.lines.append(line)
            elif line.strip():
                raise WalkError(f"an expected-output block that does not start with `$ COMMAND`:\n{block}")
    return found


def normalize(line: str) -> str:
    return re.sub(r"([─━═])\1+", r"\1", "".join(line.split()))


def line_pattern(expected: str) -> re.Pattern:
    return re.compile(".*".join(map(re.escape, normalize(expected).split("…"))))


def unmatched(expected: list[str], output: str) -> str | None:
    """The first expected line not found, in order, among the output's lines (None: all found)."""
    actual = [normalize(line) for line in output.splitlines()]
    at = 0
    for line in expected:
        if not normalize(line):
            continue
        pattern = line_pattern(line)
        while at < len(actual) and not pattern.fullmatch(actual[at]):
            at += 1
        if at == len(actual):
            return line
        at += 1
    return None


def screen(raw: bytes) -> str:
    """A terminal's bytes as the text left on the screen: no escape sequences, `\\r` overwrites."""
    text = ANSI.sub("", raw.decode("utf-8", errors="replace")).replace("\r\n", "\n")
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


@dataclass
class Result:
    command: Command
    typed: str  # what ran: the guide's text, or the participant's own line for a `# 换成你的` one
    output: str = ""
    rc: int | None = None
    seconds: float = 0.0
    skipped: str | None = None


class Shell:
    """One bash session with job control, fed one command at a time; output, exit status and time kept."""

    def __init__(self, cwd: Path, env: dict[str, str], scratch: Path):
        import subprocess

        self.scratch, self.n = scratch, 0
        scratch.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(["bash", "--norc", "--noprofile"], stdin=subprocess.PIPE, cwd=cwd, env=env,
                                     text=True, preexec_fn=interruptible, start_new_session=True)
        self._send("set -m")  # each job its own process group, as in a terminal: Ctrl-C reaches it alone

    def _send(self, script: str) -> None:
        self.proc.stdin.write(script + "\n")
        self.proc.stdin.flush()

    def _files(self) -> tuple[Path, Path]:
        self.n += 1
        return self.scratch / f"{self.n}.out", self.scratch / f"{self.n}.rc"

    def _wait(self, rc: Path, deadline: float, pump=None) -> int:
        while not rc.exists() or not rc.read_text().endswith("\n"):
            if self.proc.poll() is not None:
                raise WalkError(f"the shell itself exited ({self.proc.returncode})")
            if time.monotonic() > deadline:
                raise WalkError("timed out")
            pump() if pump else time.sleep(0.2)
        return int(rc.read_text())

    def run(self, script: str, timeout: float) -> tuple[str, int]:
        out, rc = self._files()
        self._send(f"{{ {script}\n}} </dev/null >{out} 2>&1; echo $? >{rc}")
        try:
            code = self._wait(rc, time.monotonic() + timeout)
        except WalkError as e:
            raise WalkError(f"{e}: {script}\n{out.read_text(errors='replace')[-3000:]}") from None
        return out.read_text(errors="replace"), code

    def run_on_terminal(self, script: str, typed: list[str], prompt: str, keys: str, timeout: float) -> tuple[str, int]:
        """`script` on a pseudo-terminal: each typed line goes in once the prompt shows (count-wise)."""
        import fcntl
        import select
        import struct
        import termios

        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, COLUMNS, 0, 0))
        _, rc = self._files()
        raw, left, waiting = b"", list(typed), 0.0

        def pump():
            nonlocal raw, waiting
            if select.select([master], [], [], 0.2)[0]:
                raw += os.read(master, 65536)
            prompts = screen(raw).count(prompt.strip())
            if left and prompts > len(typed) - len(left):
                os.write(master, (left.pop(0) + keys).encode())
            elif prompts > len(typed):  # it asks again after the last line the guide types
                waiting = waiting or time.monotonic()
                if time.monotonic() - waiting > 30:
                    raise WalkError("it waits for more typed input than the guide shows")

        # A subshell opens the terminal: the shell, a session leader, would take it as its controlling
        # terminal, and the command (its own process group) would then be stopped for reading it (SIGTTIN).
        self._send(f"( {script}\n) <>{os.ttyname(slave)} >&0 2>&0; echo $? >{rc}")
        try:
            code = self._wait(rc, time.monotonic() + timeout, pump)
            while select.select([master], [], [], 0.5)[0]:
                raw += os.read(master, 65536)
        except WalkError as e:
            raise WalkError(f"{e}: {script}\ntyped so far: {typed[:len(typed) - len(left)]}\n{screen(raw)[-3000:]}") \
                from None
        finally:
            os.close(master)
            os.close(slave)
        if left:
            raise WalkError(f"{script}\nended before the participant typed {left}\n{screen(raw)[-3000:]}")
        return screen(raw), code

    def start(self, script: str, timeout: float) -> "Server":
        """A long-running command, in the background and out of the job table (so the guide's own `%1`
        stays its own), once it prints READY."""
        out, rc = self._files()
        pid = self.scratch / f"{self.n}.pid"
        self._send(f"( {{ {script}\n}} </dev/null >{out} 2>&1; echo $? >{rc} ) & echo $! >{pid}; disown")
        server = Server(script, out, rc, pid)
        deadline = time.monotonic() + timeout
        while READY not in server.output():
            if rc.exists() or time.monotonic() > deadline:
                raise WalkError(f"{'exited' if rc.exists() else 'not ready in time'}: {script}\n{server.output()[-3000:]}")
            time.sleep(0.5)
        return server

    def stop(self, server: "Server", timeout: float = 120) -> tuple[str, int]:
        """Ctrl-C: SIGINT to the server's process group, as a terminal sends it."""
        os.killpg(int(server.pid.read_text()), signal.SIGINT)
        deadline = time.monotonic() + timeout
        while not server.rc.exists():
            if time.monotonic() > deadline:
                raise WalkError(f"still running {timeout} s after Ctrl-C: {server.script}\n{server.output()[-3000:]}")
            time.sleep(0.5)
        time.sleep(0.2)
        return server.output(), int(server.rc.read_text())

    def _members(self) -> list[int]:
        """The processes of this session other than the shell itself."""
        pids = []
        for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
            try:
                if pid != self.proc.pid and os.getsid(pid) == self.proc.pid:
                    pids.append(pid)
            except OSError:
                continue
        return pids

    def others(self) -> list[str]:
        """What a lab left running: the command lines of the session's other processes (zombies have none)."""
        left = []
        for pid in self._members():
            try:
                left.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip())
            except OSError:
                continue
        return [cmd for cmd in left if cmd]

    def close(self) -> None:
        for pid in self._members():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                continue
        self.proc.kill()
        self.proc.wait(timeout=30)


@dataclass
class Server:
    script: str
    out: Path
    rc: Path
    pid: Path

    def output(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""


@dataclass
class LabWalk:
    n: int
    results: list[Result]
    transcripts: list[Transcript]
    seconds: float = 0.0
    error: str | None = None  # why the walk stopped before the lab's end

    def result(self, line: str) -> Result:
        """The result of the guide's command `line` (as a Command.line, or as shown)."""
        line = squeeze(split_comment(line)[0])
        for result in self.results:
            if result.command.line == line:
                return result
        raise WalkError(f"lab {self.n} has no command `{line}`")


class Course:
    """The walk: lab 0 in the checkout itself (`cd kit-checkout`, `make env`, `source .venv/bin/activate`;
    it writes nothing there), labs 1-7 in a project of their own: a copy of the checkout's datasets/,
    recipes/ and labs/ (KIT_HOME), where lab/ and lab7/ are made. `participant` maps each `# 换成你的`
    line (a Command.line) to what the walk's participant types instead."""

    TIMEOUT = 1200  # seconds for one command; training on 2 cores takes 2-4 minutes

    def __init__(self, root: Path, home: Path, participant: dict[str, str]):
        import shutil
        import sys

        from kit.labs.catalog import load_labs

        self.labs, self.participant, self.walks = load_labs(), participant, []
        (home / "kit-checkout").symlink_to(root)
        self.project = home / "project"
        for folder in ("datasets", "recipes", "labs"):
            shutil.copytree(root / folder, self.project / folder, ignore=shutil.ignore_patterns("built"))
        venv = str(Path(sys.executable).parent)
        env = {k: v for k, v in os.environ.items()
               if k not in ("VIRTUAL_ENV", "MKL_SERVICE_FORCE_INTEL", "KIT_HOME") and not k.startswith("PYTEST")}
        env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv)  # lab 0 activates it
        env.update(COLUMNS=str(COLUMNS), PYTHONUNBUFFERED="1")  # a terminal's width; output in the order printed
        self.shell = Shell(home, env, home / "shell")

    def walk(self, n: int) -> LabWalk:
        """Lab n, walked after every lab before it (once per course)."""
        while len(self.walks) <= n:
            if self.walks and self.walks[-1].error:
                raise WalkError(f"lab {len(self.walks) - 1} did not finish: {self.walks[-1].error}")
            if len(self.walks) == 1:  # from the checkout to the project where labs 1-7 write
                self.shell.run(f"cd {self.project} && export KIT_HOME={self.project}", 10)
            self.walks.append(self._walk(self.labs[len(self.walks)].path.read_text(encoding="utf-8"),
                                         len(self.walks)))
        return self.walks[n]

    def _walk(self, guide: str, n: int) -> LabWalk:
        walk = LabWalk(n, [], [])
        server: tuple[Result, Server, float] | None = None
        start = time.monotonic()
        try:
            walk.transcripts = transcripts(guide)
            inputs = {t.command: t.inputs() for t in walk.transcripts}
            for command in course_commands(guide):
                result = Result(command, command.raw, skipped=SKIPPED.get(command.tag))
                walk.results.append(result)
                if result.skipped:
                    continue
                if command.tag == "yours":
                    if command.line not in self.participant:
                        raise WalkError(f"the participant has no line of their own for `{command.line}`")
                    result.typed = self.participant[command.line]
                if server and command.tag != "second terminal":
                    self._stop(*server)
                    server = None
                began = time.monotonic()
                if command.serves:
                    server = (result, self.shell.start(result.typed, 600), began)
                    continue
                if command.program in PROMPTS:
                    if command.line not in inputs:
                        raise WalkError(f"`{command.line}` waits for typed input, and no transcript shows it")
                    result.output, result.rc = self.shell.run_on_terminal(result.typed, inputs[command.line],
                                                                          *PROMPTS[command.program], self.TIMEOUT)
                else:
                    result.output, result.rc = self.shell.run(result.typed, self.TIMEOUT)
                result.seconds = time.monotonic() - began
                if result.rc != 0:
                    raise WalkError(f"`{result.typed}` exited {result.rc}:\n{result.output[-3000:]}")
            if server:
                self._stop(*server)
            deadline = time.monotonic() + 30
            while (left := self.shell.others()) and time.monotonic() < deadline:
                time.sleep(1)
            if left:
                raise WalkError(f"still running after the lab: {left}")
        except WalkError as e:
            walk.error = str(e)
        walk.seconds = time.monotonic() - start
        return walk

    def _stop(self, result: Result, server: Server, began: float) -> None:
        result.output, result.rc = self.shell.stop(server)
        result.seconds = time.monotonic() - began
        if result.rc != 0:
            raise WalkError(f"`{result.typed}` exited {result.rc} on Ctrl-C:\n{result.output[-3000:]}")

    def close(self) -> None:
        self.shell.close()
