"""kit doctor's cache: torch's slow probe is reused while the environment is unchanged, and only then."""

import os
import subprocess
import sys

import pytest
from kit_testing import ROOT, run_kit

from kit import doctor
from kit.doctor import FAIL, OK, Check


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """The child probe replaced by one that counts its runs; the key and the probe's answer are the test's."""
    monkeypatch.setenv("KIT_CACHE", str(tmp_path))
    fake = {"key": "env-1", "status": OK, "runs": 0}

    def start():
        fake["runs"] += 1
        return "child"

    monkeypatch.setattr(doctor, "environment_key", lambda: fake["key"])
    monkeypatch.setattr(doctor, "_start_probe", start)
    monkeypatch.setattr(doctor, "_finish_probe", lambda child: [Check("torch build", fake["status"], "2.11.0")])
    return fake


def torch_row(checks: list[Check]) -> Check:
    return next(c for c in checks if c.name == "torch build")


def test_second_run_answers_from_the_cache(probe):
    assert torch_row(doctor.run_checks()).cached == ""
    row = torch_row(doctor.run_checks())
    assert probe["runs"] == 1
    assert row.cached and row.detail == "2.11.0" and row.status == OK


def test_a_changed_environment_probes_again(probe):
    doctor.run_checks()
    probe["key"] = "env-2"  # e.g. a package installed: site-packages' mtime moved
    assert torch_row(doctor.run_checks()).cached == ""
    assert probe["runs"] == 2
    doctor.run_checks()
    assert probe["runs"] == 2  # the new answer is the one cached now


def test_fresh_probes_again(probe):
    doctor.run_checks()
    assert torch_row(doctor.run_checks(fresh=True)).cached == ""
    assert probe["runs"] == 2


def test_a_failure_is_never_cached(probe):
    probe["status"] = FAIL
    doctor.run_checks()
    doctor.run_checks()
    assert probe["runs"] == 2  # the run after a fix shows the fix, not the old failure


def test_gpu_is_looked_at_every_run(probe, monkeypatch):
    looks = []
    monkeypatch.setattr(doctor, "check_gpu", lambda: looks.append(1) or [Check("GPU", OK, "fake")])
    doctor.run_checks()
    doctor.run_checks()
    assert probe["runs"] == 1 and len(looks) == 2


def test_the_key_follows_site_packages(tmp_path, monkeypatch):
    site_packages = tmp_path / "site-packages"
    site_packages.mkdir()
    monkeypatch.setattr(doctor.site, "getsitepackages", lambda: [str(site_packages)])
    monkeypatch.setattr(doctor.site, "getusersitepackages", lambda: str(tmp_path / "user"))
    before = doctor.environment_key()
    assert doctor.environment_key() == before
    (site_packages / "torch-2.12.0.dist-info").mkdir()  # what an upgrade leaves
    os.utime(site_packages, ns=(1, 1))  # a moved mtime, whatever the clock's resolution
    assert doctor.environment_key() != before


def test_kit_doctor_says_what_came_from_the_cache(tmp_path):
    env = {"KIT_CACHE": str(tmp_path), "COLUMNS": "200"}
    first, second, fresh = (run_kit(*args, env=env) for args in (["doctor"], ["doctor"], ["doctor", "--fresh"]))
    for done in (first, second, fresh):
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout + done.stderr
        assert "torchvision matches torch" in done.stdout
    assert "(cached" not in first.stdout and "(cached" not in fresh.stdout
    assert "(cached" in second.stdout and "kit doctor --fresh" in second.stdout
    if not any(doctor.glob.glob(p) for p in doctor.GPU_DEVICES):  # on a GPU machine the GPU rows need torch
        done = subprocess.run([sys.executable, "-c", "import sys, kit.doctor as d; d.run_checks(); "
                               "print('torch' in sys.modules)"], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, **env}, timeout=300)
        assert done.stdout.strip() == "False", done.stderr[-2000:]  # a cached doctor never imports torch


def test_a_probe_that_dies_is_a_blocking_row():
    child = subprocess.Popen([sys.executable, "-c", "import os; os.abort()"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    [row] = doctor._finish_probe(child)
    assert (row.name, row.status) == ("torch", FAIL) and "died" in row.detail
