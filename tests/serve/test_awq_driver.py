"""The AWQ driver's fix for InternLM2 remote code under transformers 5 (runs on CPU, no LMDeploy needed).

transformers 5 leaves the non-persistent RoPE buffer `inv_freq` uninitialised; on the H100 it held
inf/NaN and LMDeploy's calibration asserted on NaN activations. The driver recomputes it after loading.
"""

import pytest
import torch
from torch import nn

from kit.serve.awq_driver import fix_loaded_model, restore_rope_buffers


@pytest.fixture(scope="module")
def tiny():
    from transformers import AutoModelForCausalLM

    from kit.tiny import build_tiny_model

    return AutoModelForCausalLM.from_pretrained(build_tiny_model(), trust_remote_code=True).eval()


def rotary_modules(model):
    return [m for m in model.modules() if "inv_freq" in m._buffers]


def test_garbage_rope_buffers_are_recomputed_as_init_does(tiny):
    ids = torch.arange(3, 40).unsqueeze(0)
    rotaries = rotary_modules(tiny)
    assert len(rotaries) == tiny.config.num_hidden_layers
    reference = [m.inv_freq.clone() for m in rotaries]  # transformers 4.x computed them at construction
    with torch.no_grad():
        logits = tiny(ids).logits
        for m in rotaries:  # what uninitialised GPU memory gave on the H100
            m.inv_freq[::3] = float("inf")
            m.inv_freq[1::3] = float("nan")
        assert torch.isnan(tiny(ids).logits).any()
        assert restore_rope_buffers(tiny) == len(rotaries)
        assert all(torch.equal(m.inv_freq, r) for m, r in zip(rotaries, reference))
        assert torch.equal(tiny(ids).logits, logits)


def test_rotary_without_dim_and_base_is_left_alone():
    class NativeStyle(nn.Module):  # transformers' own rotary classes: initialised by transformers
        def __init__(self):
            super().__init__()
            self.register_buffer("inv_freq", torch.full((4,), 7.0), persistent=False)

    model = nn.Sequential(NativeStyle())
    assert restore_rope_buffers(model) == 0 and torch.equal(model[0].inv_freq, torch.full((4,), 7.0))


def test_loader_wrapper_fixes_rope_and_tied_keys(tiny):
    for m in rotary_modules(tiny):
        m.inv_freq.fill_(float("nan"))
    tiny._tied_weights_keys = ["output.weight"]
    model = fix_loaded_model(lambda *a, **k: tiny)("path", dtype="float16")
    assert model._tied_weights_keys == {}
    assert not any(torch.isnan(m.inv_freq).any() for m in rotary_modules(model))
