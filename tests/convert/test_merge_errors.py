"""Every way a merge can go wrong ends in a KitError that says why, and leaves no partial model."""

import json
import shutil

import pytest

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

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", disk_full)  # the weights
    with pytest.raises(KitError, match="No space left on device"):
        _merge(run_copy)
    assert sorted(p.name for p in run_copy["out"].iterdir()) == ["merged"]
    assert [p.name for p in old.iterdir()] == ["config.json"]


def test_a_wrong_merge_is_caught(run_copy, monkeypatch):
    """If merging silently dropped the adapter, the logit check must refuse the result."""
    from peft.tuners.lora import LoraModel

    monkeypatch.setattr(LoraModel, "merge_and_unload", lambda self, **kw: self.unload())
    with pytest.raises(KitError, match="logits differ from base \\+ adapter"):
        _merge(run_copy)
    _assert_nothing_written(run_copy)


def test_a_template_unlike_training_is_caught(run_copy, monkeypatch):
    from kit.convert import template

    real = template.persona_chat_template
    monkeypatch.setattr(template, "persona_chat_template",
                        lambda system: real(system).replace("'<|im_end|>' + '\n'", "'<|im_end|>'"))
    with pytest.raises(KitError, match="chat template check failed"):
        _merge(run_copy)
    _assert_nothing_written(run_copy)
