"""URL mode: a model behind an OpenAI-compatible server scores as the same model loaded locally."""

import pytest

from kit.errors import KitError
from kit.eval.backends import Endpoint, LocalModel
from kit.eval.perplexity import heldout_perplexity
from kit.eval.samples import load_samples


def test_served_model_matches_local(eval_models, serve):
    server = serve(eval_models.tuned)
    samples = load_samples(eval_models.eval_file)
    remote, local = Endpoint(server.url), LocalModel(eval_models.tuned)
    assert remote.model == "fake"
    got, want = heldout_perplexity(remote, samples), heldout_perplexity(local, samples)
    assert got.tokens == want.tokens and got.value == pytest.approx(want.value, rel=1e-4)
    assert remote.generate(samples[0].context, 16) == local.generate(samples[0].context, 16)
    _, body = next(r for r in server.requests if r[0] == "/v1/completions")
    assert body["echo"] is True and body["logprobs"] == 1


def test_no_logprobs_means_no_perplexity_with_a_reason(eval_models, serve):
    server = serve(eval_models.tuned, echo=False)
    result = heldout_perplexity(Endpoint(server.url), load_samples(eval_models.eval_file))
    assert result.value is None
    assert "log-probs" in result.reason and "HTTP 404" in result.reason


def test_unreachable_endpoint_is_a_clear_error(serve):
    server = serve(lambda messages, n: "")
    url = server.url
    server.close()
    with pytest.raises(KitError, match="no OpenAI-compatible server answers"):
        Endpoint(url)
