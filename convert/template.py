"""Proof that a merged model's chat template renders exactly what XTuner trained on.

kit merge writes kit.chat_format's persona template (InternLM2's ChatML with the persona as default
system prompt) into the tokenizer; `check_template` compares the token ids it gives with XTuner's own
internlm2_chat encoding of the same conversations.
"""

from kit.errors import KitError


def xtuner_encoding(tokenizer, messages: list[dict]) -> dict:
    """input_ids and labels XTuner trains on for `messages` (openai_map_fn -> internlm2_chat -> encode_fn)."""
    from xtuner.dataset.map_fns import openai_map_fn, template_map_fn_factory
    from xtuner.dataset.utils import encode_fn
    from xtuner.utils import PROMPT_TEMPLATE

    example = openai_map_fn({"messages": [dict(m) for m in messages]})
    example = template_map_fn_factory(PROMPT_TEMPLATE.internlm2_chat)(example)
    return encode_fn(example, tokenizer, max_length=10**9)


def _first_difference(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def check_template(tokenizer, persona) -> int:
    """Compare the tokenizer's chat template with XTuner's encoding; return the conversations checked.

    Cases: no system message (the persona default must appear), multi-turn, an explicit other system
    prompt, and the generation prompt (the training ids up to where the last answer starts).
    """
    questions = persona.probe_questions + ["你好"] * 2
    answers = persona.sample_lines + persona.catchphrases + ["好的。"] * 2
    system = {"role": "system", "content": persona.system_prompt}
    turns = [m for q, a in zip(questions[:2], answers[:2])
             for m in ({"role": "user", "content": q}, {"role": "assistant", "content": a})]
    cases = [
        ("one turn, persona by default", turns[:2], [system, *turns[:2]]),
        ("two turns, persona by default", turns, [system, *turns]),
        ("explicit system prompt", [{"role": "system", "content": "You are a helpful assistant."},
                                    *turns[:2]], None),
    ]
    for name, messages, trained in cases:
        expected = xtuner_encoding(tokenizer, trained or messages)["input_ids"]
        got = tokenizer.apply_chat_template(messages, tokenize=True)
        _compare(tokenizer, name, got, expected)
    # The generation prompt: the training ids up to where the last answer's labels begin.
    full = xtuner_encoding(tokenizer, [system, *turns])
    from xtuner.utils.constants import IGNORE_INDEX

    labels = full["labels"]
    start = max(i for i in range(1, len(labels)) if labels[i - 1] == IGNORE_INDEX != labels[i])
    got = tokenizer.apply_chat_template(turns[:-1], tokenize=True, add_generation_prompt=True)
    _compare(tokenizer, "generation prompt", got, full["input_ids"][:start])
    return len(cases) + 1


def _compare(tokenizer, name: str, got: list[int], expected: list[int]) -> None:
    if got == expected:
        return
    i = _first_difference(got, expected)
    show = lambda ids: repr(tokenizer.decode(ids[max(0, i - 3):i + 4]))  # noqa: E731
    raise KitError(f"chat template check failed ({name}): token {i} differs from XTuner's "
                   f"internlm2_chat encoding ({len(got)} vs {len(expected)} tokens; template "
                   f"{show(got)} vs training {show(expected)})",
                   "the merged model would be prompted differently from how it was trained; "
                   "report this with the base model's tokenizer_config.json")
