"""Every way a merge can go wrong ends in a KitError that says why, and leaves no partial model."""

import io
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
from rich.console import Console

from kit.convert.merge import merge_run
from kit.errors import KitError


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """A private copy of the run's work dir, to damage."""
    work = tmp_path / "work"
    shutil.copytree(tiny_run["work"], work)
    return {**tiny_run, "work": work, "out": tmp_path / "out"}


def _merge(run, base=None, **kw):
    return merge_run(run["work"], base or run["base"], run["out"] / "adapter", run["out"] / "merged", **kw)


def _assert_nothing_written(run):
    left = sorted(p.name for p in run["out"].iterdir()) if run["out"].exists() else []
    assert left == [], f"left behind: {left}"


def _other_base(tiny_model, out, **shape):
    """A real model folder with the tiny model's tokenizer and code but another shape."""
    from transformers import AutoConfig, AutoModelForCausalLM

    shutil.copytree(tiny_model, out, ignore=shutil.ignore_patterns("*.safetensors"))
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, **shape}))
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(out, trust_remote_code=True),
                                             trust_remote_code=True)
    model.save_pretrained(out)
    return out


def test_missing_checkpoint(run_copy):
    for ckpt in run_copy["work"].glob("iter_*.pth"):
        ckpt.unlink()
    with pytest.raises(KitError, match=r"no checkpoint \(iter_N.pth\)"):
        _merge(run_copy)
    with pytest.raises(KitError, match=r"iter_99.pth not found .*available: none"):
        _merge(run_copy, checkpoint="iter_99.pth")
    _assert_nothing_written(run_copy)


def test_corrupt_checkpoint(run_copy):
    ckpt = run_copy["work"] / "iter_4.pth"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # a copy cut short
    with pytest.raises(KitError, match="iter_4.pth is unreadable or corrupt") as e:
        _merge(run_copy)
    assert "--checkpoint" in e.value.fix
    _assert_nothing_written(run_copy)


@pytest.mark.parametrize("shape", [{"hidden_size": 32, "intermediate_size": 86},
                                   {"vocab_size": 1500}])
def test_base_that_does_not_match(run_copy, tmp_path, shape):
    other = _other_base(run_copy["base"], tmp_path / "other", **shape)
    field = next(iter(shape))
    with pytest.raises(KitError, match=f"does not match the model the run trained on.*{field}"):
        _merge(run_copy, base=other)
    # The base the run trained on is gone: the checkpoint's tensor shapes still tell.
    config = next(run_copy["work"].glob("*.py"))
    config.write_text(config.read_text().replace(str(run_copy["base"]), "/gone/base"))
    with pytest.raises(KitError, match=r"is \(\d+, \d+\) but base .* needs \(\d+, \d+\)"):
        _merge(run_copy, base=other)
    _assert_nothing_written(run_copy)


def test_write_failing_midway_keeps_the_old_model(run_copy, monkeypatch):
    import transformers.modeling_utils

    old = run_copy["out"] / "merged"
    old.mkdir(parents=True)
    (old / "config.json").write_text("{}")
    (old / "kit_merge.json").write_text("{}")  # an earlier merge's: kit may replace it

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", disk_full)  # the weights
    with pytest.raises(KitError, match="No space left on device"):
        _merge(run_copy)
    assert sorted(p.name for p in run_copy["out"].iterdir()) == ["merged"]
    assert sorted(p.name for p in old.iterdir()) == ["config.json", "kit_merge.json"]


def test_a_wrong_merge_is_caught(run_copy, monkeypatch):
    """If merging silently dropped the adapter, the logit check must refuse the result."""
    from peft.tuners.lora import LoraModel

    monkeypatch.setattr(LoraModel, "merge_and_unload", lambda self, **kw: self.unload())
    with pytest.raises(KitError, match="logits differ from base \\+ adapter"):
        _merge(run_copy)
    _assert_nothing_written(run_copy)


def test_a_template_unlike_training_is_caught(run_copy, monkeypatch):
    from kit import chat_format

    real = chat_format.persona_chat_template
    monkeypatch.setattr(chat_format, "persona_chat_template",
                        lambda system: real(system).replace("'<|im_end|>' + '\n'", "'<|im_end|>'"))
    with pytest.raises(KitError, match="chat template check failed"):
        _merge(run_copy)
    _assert_nothing_written(run_copy)


def _other_weights(tiny_model, out):
    """The tiny model with every weight moved by 0.01: the same shape, another model."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(tiny_model, out)
    for path in out.glob("*.safetensors"):
        save_file({k: v + 0.01 for k, v in load_file(path).items()}, path, metadata={"format": "pt"})
    return out


def _console():
    return Console(file=io.StringIO(), width=400)


def test_outputs_never_replace_an_input_not_even_with_force(run_copy, tmp_path):
    """Before: `kit merge RUN -o RUN` deleted the run, checkpoints and all, and exited 0."""
    work, out = run_copy["work"], run_copy["out"]
    base = shutil.copytree(run_copy["base"], tmp_path / "base")
    for adapter, merged in [(out / "adapter", work), (out / "adapter", work.parent),
                            (base, out / "merged"), (out / "both", out / "both")]:
        with pytest.raises(KitError, match="is or holds .*: replacing it would delete it"):
            merge_run(work, base, adapter, merged, force=True)
    assert (work / "iter_4.pth").is_file() and (base / "config.json").is_file()
    _assert_nothing_written(run_copy)


def test_a_folder_kit_did_not_write_is_kept_unless_force(run_copy, tmp_path):
    out = run_copy["out"]
    for name, option in [("merged", "--out"), ("adapter", "--adapter-out")]:
        mine = out / name
        mine.mkdir(parents=True)
        (mine / "notes.txt").write_text("mine")
        with pytest.raises(KitError, match=f"{option} .*{name} is not empty and has no kit_") as e:
            _merge(run_copy)
        assert "--force" in e.value.fix and (mine / "notes.txt").read_text() == "mine"
    # A killed merge's scratch folder is removed (and said), a live one's kept; --force replaces.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    host = socket.gethostname()
    killed = out / f".merged.partial-{host}-{dead}-k1ll3d"
    live = out / f".adapter.partial-{host}-{os.getpid()}-l1v3"
    for stage in (killed, live):
        stage.mkdir()
        (stage / "model.safetensors").write_bytes(bytes(2**20))
    console = _console()
    same = shutil.copytree(run_copy["base"], tmp_path / "same-base")  # other path, same weights: fine
    _merge(run_copy, base=same, force=True, console=console)
    assert "1.0 MiB freed" in console.file.getvalue()
    assert not killed.exists() and live.is_dir()
    assert (out / "merged" / "kit_merge.json").is_file() and (out / "adapter" / "kit_adapter.json").is_file()
    assert not (out / "merged" / "notes.txt").exists()


def test_a_base_with_other_weights_is_refused(run_copy, tmp_path):
    """Before: a base of the same shape but other weights was merged into without a word."""
    other = _other_weights(run_copy["base"], tmp_path / "other")
    with pytest.raises(KitError, match=r"has the shape of .*, the base the run trained on, but other "
                                       r"weights \(model\..* differs\)") as e:
        _merge(run_copy, base=other)
    assert str(run_copy["base"]) in e.value.fix and "--allow-base-mismatch" in e.value.fix
    _assert_nothing_written(run_copy)
    console = _console()
    _merge(run_copy, base=other, allow_base_mismatch=True, console=console)
    assert "warning: base" in console.file.getvalue()
    assert (run_copy["out"] / "merged" / "kit_merge.json").is_file()


def test_deepspeeds_own_script_is_not_taken_for_the_config(tmp_path):
    from kit.convert.locate import find_config

    # A ZeRO run's work dir on the H200: XTuner's config, then DeepSpeed's zero_to_fp32.py, written later.
    (tmp_path / "bajie.py").write_text("model = dict()\n")
    script = tmp_path / "zero_to_fp32.py"
    script.write_text("import deepspeed\n")
    os.utime(script, (os.path.getmtime(tmp_path / "bajie.py") + 60,) * 2)
    assert find_config(tmp_path) == tmp_path / "bajie.py"
