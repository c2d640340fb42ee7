"""Held-out perplexity on real models: the tiny base vs a LoRA-tuned copy (fixtures in conftest.py)."""

import pytest

from kit.eval.backends import LocalModel
from kit.eval.perplexity import heldout_perplexity
from kit.eval.samples import load_samples


@pytest.fixture(scope="module")
def models(eval_models):
    return {"base": LocalModel(eval_models.base), "tuned": LocalModel(eval_models.tuned),
            "samples": load_samples(eval_models.eval_file)}


def test_only_the_final_reply_counts(models):
    model, sample = models["base"], models["samples"][0]
    tok = model.tokenizer
    score = model.reply_score(sample.messages)
    # The reply's own tokens plus its end-of-turn token <|im_end|>.
    assert score.tokens == len(tok(sample.reply, add_special_tokens=False).input_ids) + 1
    longer_context = [{**sample.messages[0], "content": sample.messages[0]["content"] + "再说一遍。"},
                      *sample.messages[1:]]
    assert model.reply_score(longer_context).tokens == score.tokens
    other_reply = [*sample.messages[:-1], {"role": "assistant", "content": "嗯。"}]
    assert model.reply_score(other_reply).tokens < score.tokens


def test_tuned_speaks_more_like_him_on_held_out_lines(models):
    base = heldout_perplexity(models["base"], models["samples"])
    tuned = heldout_perplexity(models["tuned"], models["samples"])
    assert base.samples == tuned.samples == len(models["samples"]) and base.tokens == tuned.tokens
    # Random weights sit near the vocabulary size; training on his other lines must cut that sharply.
    assert tuned.value < base.value / 3


def test_adapter_on_base_scores_as_the_merged_model(eval_models, models):
    adapter = LocalModel(eval_models.adapters[-1], base=eval_models.base)
    merged = heldout_perplexity(models["tuned"], models["samples"]).value
    assert heldout_perplexity(adapter, models["samples"]).value == pytest.approx(merged, rel=1e-4)
