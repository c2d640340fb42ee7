"""The one chat format: the text kit renders is what the tokenizers' templates render, what XTuner
trains on and what LMDeploy is told; one loader and greedy reply for every local model."""

import pytest
import torch
from transformers import AutoTokenizer, GenerationConfig

from kit import chat_format
from kit.hf_models import generate_reply, load_model
from kit.tiny import tiny_tokenizer

SYSTEM = {"role": "system", "content": "你是猪八戒。"}
TURNS = [{"role": "user", "content": "你是谁？"}, {"role": "assistant", "content": "俺老猪是也。"},
         {"role": "user", "content": "饿了吗？"}]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(tiny_tokenizer())


@pytest.mark.parametrize("messages", [TURNS[:1], TURNS, [SYSTEM, *TURNS]])
def test_render_is_the_tiny_tokenizers_template(tokenizer, messages):
    for generation_prompt in (False, True):
        expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
        assert chat_format.BOS + chat_format.render(messages, generation_prompt) == expected


def test_persona_template_adds_the_persona_unless_a_system_prompt_is_given(tokenizer):
    tokenizer.chat_template = chat_format.persona_chat_template(SYSTEM["content"])
    for messages in (TURNS, [SYSTEM, *TURNS]):
        got = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert got == chat_format.BOS + chat_format.render([SYSTEM, *TURNS], generation_prompt=True)
    other = {"role": "system", "content": 'a "quoted"\nprompt'}
    got = tokenizer.apply_chat_template([other, *TURNS[:1]], tokenize=False)
    assert got == chat_format.BOS + chat_format.render([other, *TURNS[:1]])


def test_render_is_xtuners_internlm2_chat():
    from xtuner.utils import PROMPT_TEMPLATE

    t = PROMPT_TEMPLATE.internlm2_chat
    (q1, a1, q2), system = (m["content"] for m in TURNS), SYSTEM["content"]
    trained = (t.SYSTEM.format(system=system) + t.INSTRUCTION.format(input=q1) + a1 + t.SUFFIX + t.SEP
               + t.INSTRUCTION.format(input=q2))
    assert chat_format.render([SYSTEM, *TURNS], generation_prompt=True) == trained
    assert t.STOP_WORDS == [chat_format.IM_END]


def test_lmdeploy_template_builds_the_same_prompt():
    cfg = chat_format.lmdeploy_chat_template("kit-bajie", SYSTEM["content"])
    q1, a1, q2 = (m["content"] for m in TURNS)
    # What LMDeploy's BaseChatTemplate.messages2prompt builds from these fields.
    prompt = (cfg["system"] + cfg["meta_instruction"] + cfg["eosys"] + cfg["user"] + q1 + cfg["eoh"]
              + cfg["assistant"] + a1 + cfg["eoa"] + cfg["separator"] + cfg["user"] + q2 + cfg["eoh"]
              + cfg["assistant"])
    assert prompt == chat_format.render([SYSTEM, *TURNS], generation_prompt=True)
    assert cfg["stop_words"] == [chat_format.IM_END]


def test_stop_ids_add_eos_and_im_end_once(tokenizer):
    eos, im_end = tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(chat_format.IM_END)
    assert chat_format.stop_ids(tokenizer, GenerationConfig(eos_token_id=eos)) == [eos, im_end]
    assert chat_format.stop_ids(tokenizer, GenerationConfig(eos_token_id=[im_end, eos])) == [im_end, eos]
    assert chat_format.stop_ids(tokenizer, GenerationConfig()) == [eos, im_end]


def test_last_reply_drops_the_prompt_and_special_tokens():
    decoded = "<s>" + chat_format.render(TURNS, generation_prompt=True) + "俺饿了。<|im_end|></s>"
    assert chat_format.last_reply(decoded) == "俺饿了。"


def test_load_model_and_generate_reply(tiny_model):
    tokenizer, model = load_model(tiny_model)
    assert not model.training and model.dtype == torch.float32 and model.device.type == "cpu"
    reply = generate_reply(tokenizer, model, [{"role": "user", "content": "你是谁？"}], max_new_tokens=40)
    assert reply and "<|im" not in reply
    # The reply ended at the turn's end, not at max_new_tokens: its ids are fewer.
    assert len(tokenizer(reply, add_special_tokens=False).input_ids) < 40
