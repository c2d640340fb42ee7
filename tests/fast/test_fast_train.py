"""kit.train.fast on the tiny InternLM2 (CPU, fp32): the fast paths compute what stock XTuner computes.

The CUDA kernels (FlashAttention varlen, Liger) are held to the same torch references by
test_fast_cuda.py, which runs on the GPU machine only.
"""

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM
from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.model import SupervisedFinetune
from xtuner.utils import IGNORE_INDEX

from kit.train.fast import FastSupervisedFinetune, packed_collate_fn
from kit.train.fast.attention import set_packed, varlen_causal_attention
from kit.train.fast.loss import linear_cross_entropy
from kit.train.fast.lora import lora_linear_forward


def _rand(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_collate_flattens_rows_and_shifts_labels_per_row():
    rows = [{"input_ids": [5, 6, 7, 8, 9], "labels": [-100, 6, 7, -100, 9], "cumulative_len": [0, 3, 5]},
            {"input_ids": [1, 2, 3], "labels": [1, 2, 3]}]
    data = packed_collate_fn(rows)["data"]
    assert data["input_ids"].tolist() == [[5, 6, 7, 8, 9, 1, 2, 3]]
    # each row shifted on its own: the last token of a row predicts nothing
    assert data["shifted_labels"].tolist() == [[6, 7, -100, 9, -100, 2, 3, -100]]
    assert data["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 2]]
    assert data["cu_seqlens"].tolist() == [0, 3, 5, 8] and data["max_seqlen"] == 3


def test_varlen_attention_keeps_documents_apart():
    lengths, heads, kv_heads, dim = [5, 7, 4], 4, 2, 8
    total = sum(lengths)
    q, k, v = _rand(total, heads, dim, seed=1), _rand(total, kv_heads, dim, seed=2), _rand(total, kv_heads, dim, seed=3)
    cu = torch.tensor([0, 5, 12, 16], dtype=torch.int32)
    out = varlen_causal_attention(q, k, v, cu, max(lengths))
    for s, e in zip(cu[:-1].tolist(), cu[1:].tolist()):
        ref = F.scaled_dot_product_attention(q[s:e].transpose(0, 1), k[s:e].transpose(0, 1),
                                             v[s:e].transpose(0, 1), is_causal=True, enable_gqa=True)
        torch.testing.assert_close(out[s:e], ref.transpose(0, 1), rtol=1e-5, atol=1e-5)


def test_linear_cross_entropy_matches_full_logits_with_lora_head():
    head = get_peft_model(torch.nn.Sequential(torch.nn.Linear(16, 50, bias=False)),
                          LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["0"])).base_model.model[0]
    torch.nn.init.normal_(head.lora_B["default"].weight)
    hidden = _rand(2, 9, 16, seed=4).requires_grad_()
    labels = torch.randint(0, 50, (2, 9), generator=torch.Generator().manual_seed(5))
    labels[0, :3] = IGNORE_INDEX
    loss = linear_cross_entropy(hidden, head, labels, chunk=4)  # several chunks, one partial
    loss.backward()
    got = [hidden.grad, head.lora_A["default"].weight.grad, head.lora_B["default"].weight.grad]
    hidden.grad = None
    head.zero_grad()
    ref = F.cross_entropy(head(hidden).reshape(-1, 50), labels.reshape(-1), ignore_index=IGNORE_INDEX)
    ref.backward()
    want = [hidden.grad, head.lora_A["default"].weight.grad, head.lora_B["default"].weight.grad]
    torch.testing.assert_close(loss, ref)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


def _lora():
    return ConfigDict(type=LoraConfig, r=8, lora_alpha=16, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")


def _llm(path):
    return ConfigDict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=str(path),
                trust_remote_code=True, torch_dtype=torch.float32)


@pytest.fixture(scope="module")
def models(tiny_model):
    """Stock SupervisedFinetune and ours over the same tiny weights and the same LoRA weights."""
    with pytest.MonkeyPatch.context() as mp:
        # XTuner's model builder asks torch.cpu.is_bf16_supported, which torch does not have.
        mp.setattr(torch.cpu, "is_bf16_supported", lambda: False, raising=False)
        stock = SupervisedFinetune(llm=_llm(tiny_model), lora=_lora())
        ours = FastSupervisedFinetune(llm=_llm(tiny_model), lora=_lora())
        partial = FastSupervisedFinetune(llm=_llm(tiny_model), lora=_lora(), checkpoint_layers=1)
    for name, p in stock.named_parameters():
        if "lora_B" in name:  # LoRA starts with B = 0; random B makes every LoRA gradient non-zero
            torch.nn.init.normal_(p, std=0.05, generator=torch.Generator().manual_seed(hash(name) % 2**31))
    for m in (ours, partial):
        m.load_state_dict(stock.state_dict(), strict=False)
    return stock.train(), ours.train(), partial.train()


def _rows(seed, lengths=(48, 48)):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for n in lengths:
        ids = torch.randint(10, 2000, (n,), generator=g)
        labels = ids.clone()
        labels[: n // 3] = IGNORE_INDEX  # a prompt without loss, as XTuner's templates make
        rows.append({"input_ids": ids.tolist(), "labels": labels.tolist()})
    return rows


def _lora_grads(model):
    return {n.split("lora_")[0] + n.split("lora_")[1]: p.grad.clone()
            for n, p in model.named_parameters() if "lora_" in n}


def _loss_and_grads(model, data):
    model.zero_grad()
    loss = model.compute_loss(data)["loss"]
    loss.backward()
    return loss.detach(), _lora_grads(model)


def test_fast_model_matches_stock_loss_and_lora_grads(models):
    stock, ours, _ = models
    rows = _rows(0)
    ref, want = _loss_and_grads(stock, default_collate_fn(rows)["data"])
    got, have = _loss_and_grads(ours, packed_collate_fn(rows)["data"])
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    assert want.keys() == have.keys() and any(k.startswith("llm.base_model.model.output.") for k in want)
    assert sum(getattr(m.forward, "__func__", None) is lora_linear_forward for m in ours.modules()) == 11
    for k in want:
        torch.testing.assert_close(have[k], want[k], rtol=1e-4, atol=1e-6, msg=k)


def test_selective_checkpointing_gives_the_same_gradients(models):
    _, ours, partial = models
    data = packed_collate_fn(_rows(1))["data"]
    (ref, want), (got, have) = _loss_and_grads(ours, data), _loss_and_grads(partial, data)
    torch.testing.assert_close(got, ref)
    for k in want:
        torch.testing.assert_close(have[k], want[k], msg=k)


def test_packed_documents_do_not_see_each_other(models):
    _, ours, _ = models
    first, second = _rows(2, lengths=(20, 28))
    packed = {"input_ids": first["input_ids"] + second["input_ids"],
              "labels": first["labels"] + second["labels"], "cumulative_len": [0, 20, 48]}
    lm = ours.causal_lm()

    def hidden(row):
        data = packed_collate_fn([row])["data"]
        set_packed(data["cu_seqlens"], data["max_seqlen"])
        with torch.no_grad():
            return lm.model(input_ids=data["input_ids"], position_ids=data["position_ids"])[0][0]

    torch.testing.assert_close(hidden(packed)[20:], hidden(second), rtol=1e-5, atol=1e-5)


def test_generation_still_runs_the_stock_path(models):
    stock, ours, _ = models
    ids = torch.tensor([[1, 300, 301, 302]])
    outs = []
    for m in (stock, ours):
        m.llm.eval()
        with torch.no_grad():
            outs.append(m.llm.generate(input_ids=ids, max_new_tokens=6, do_sample=False))
        m.llm.train()
    assert torch.equal(outs[0], outs[1])
