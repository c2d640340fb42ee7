"""Child processes of `kit serve`: each in its own process group, all stopped together on Ctrl-C.

LMDeploy's engine and Streamlit spawn processes of their own; killing a child's whole group leaves no
orphan holding a port or GPU memory. A `kit serve` killed outright cannot do that: its children are
started through serve/tether.py, which has Linux stop them when their parent dies.
"""

import os
import signal
import socket
import subprocess
import time

import httpx
from rich.console import Console

from kit.errors import KitError
from kit.serve import tether


def free_port() -> int:
    """A port on loopback that nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_free_port(host: str, port: int, option: str) -> None:
    """Refuse before anything loads, rather than after a model has spent a minute loading."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is free
        try:
            probe.bind((host, port))
        except OSError as e:
            raise KitError(f"port {port} on {host} is not free ({e.strerror}): another `kit serve`?",
                           f"stop whatever listens there, or pick another port with {option}") from None


class Children:
    def __init__(self, console: Console):
        self.console = console
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], env: dict | None = None) -> subprocess.Popen:
        # Call from the main thread: the parent-death signal follows the thread that forked the child.
        env = {**os.environ, **(env or {}), tether.PARENT_ENV: str(os.getpid())}
        proc = subprocess.Popen(cmd, env=env, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def wait_ready(self, name: str, proc: subprocess.Popen, url: str, headers: dict, timeout: float) -> None:
        """Poll URL until it answers 200, with a spinner counting the seconds; then say how long it took."""
        start = time.monotonic()
        with self.console.status(f"waiting for {name} to answer") as status:
            while (waited := time.monotonic() - start) < timeout:
                if proc.poll() is not None:
                    raise KitError(f"{name} exited with code {proc.returncode} while starting",
                                   "read its output above")
                try:
                    if httpx.get(url, headers=headers, timeout=2).status_code == 200:
                        self.console.print(f"{name} answers after {waited:.0f} s")
                        return
                except httpx.HTTPError:
                    pass
                status.update(f"waiting for {name} to answer: {waited:.0f} s")
                time.sleep(0.5)
        raise KitError(f"{name} did not answer {url} within {timeout:.0f}s")

    def watch(self) -> None:
        """Block until Ctrl-C/SIGTERM or until a child dies."""
        while True:
            for name, proc in self.procs:
                if proc.poll() is not None:
                    raise KitError(f"{name} exited with code {proc.returncode}; stopping the others")
            time.sleep(0.5)

    def stop_all(self, grace: float = 10) -> None:
        for _, proc in self.procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for _, proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(proc, signal.SIGKILL)  # the group may outlive its leader
            proc.wait()
        self.procs.clear()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def sigterm_as_interrupt() -> None:
    """`kill PID` stops kit like Ctrl-C does: through the same clean-up path."""
    def raise_interrupt(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, raise_interrupt)
