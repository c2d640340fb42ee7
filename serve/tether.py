"""`python serve/tether.py [--arg-from-env FLAG VAR]... MODULE [ARGS...]`: `python -m MODULE ARGS...` as a
child of `kit serve` that cannot outlive it and takes its secrets from the environment.

- Parent death: Linux sends the child SIGTERM when `kit serve` dies, however it dies (SIGKILL, the OOM
  killer), so no model server is left holding its port and memory. A child whose parent died before
  the signal was armed ($KIT_SERVE_PID is not its parent any more) exits at once.
- `--arg-from-env --api-keys V` appends `--api-keys $V` to MODULE's arguments inside this process:
  /proc/PID/cmdline, which `ps` shows to every user of a shared host, holds only the variable's name.

Standard library only: it also runs under LMDeploy's interpreter, where kit is not installed.
"""

import ctypes
import os
import runpy
import signal
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_ENV = "KIT_SERVE_PID"


def command(python: str | Path, module: str, args: list[str],
            args_from_env: dict[str, str] | None = None) -> list[str]:
    """The argv that runs `python -m module args`, tethered; args_from_env maps a flag to the variable
    whose value follows it."""
    secret = [x for flag, var in (args_from_env or {}).items() for x in ("--arg-from-env", flag, var)]
    return [str(python), str(Path(__file__).resolve()), *secret, module, *args]


def die_with_parent(environ) -> None:
    if not sys.platform.startswith("linux"):
        return  # no parent-death signal elsewhere; `kit serve`'s Ctrl-C and SIGTERM still stop the group
    expected = int(environ.get(PARENT_ENV) or os.getppid())
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != expected:  # the parent died before prctl: the signal will never come
        sys.exit(f"tether: kit serve (pid {expected}) is gone; not starting")


def module_argv(argv: list[str], environ) -> tuple[str, list[str]]:
    """(MODULE, its arguments with the ones taken from the environment appended)."""
    extra = []
    while argv[:1] == ["--arg-from-env"]:
        flag, var, argv = argv[1], argv[2], argv[3:]
        if not environ.get(var):
            sys.exit(f"tether: ${var} (for {flag}) is empty; export {var}=... before `kit serve`")
        extra += [flag, environ[var]]
    if not argv:
        sys.exit("usage: python serve/tether.py [--arg-from-env FLAG VAR]... MODULE [ARGS...]")
    return argv[0], [*argv[1:], *extra]


def main() -> None:
    die_with_parent(os.environ)
    module, args = module_argv(sys.argv[1:], os.environ)
    # As `python -m` does: the working directory on sys.path, not serve/ (whose modules are kit.serve's).
    sys.path[0] = os.getcwd()
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
