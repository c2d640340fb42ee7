"""The embedded tiny InternLM2: loads through trust_remote_code, speaks as a plain assistant, covers
every character it will see, builds deterministically."""

import hashlib
import json
from dataclasses import replace

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from kit.eval.style import persona_markers
from kit.paths import datasets_dir
from kit.persona import persona_for
from kit.tiny import PRETRAIN, build_tiny_model, tiny_tokenizer
from kit.tiny.pretrain import CORPUS, load_corpus
from kit.tiny.vocab import characters_in
from kit_testing import ROOT


def greedy(model, tok, messages, max_new_tokens=40) -> str:
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                         do_sample=False)
    return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def test_loads_with_remote_code_and_generates(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model, trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, trust_remote_code=True)
    assert type(model).__name__ == "InternLM2ForCausalLM"
    assert json.loads((tiny_model / "config.json").read_text())["auto_map"]["AutoModelForCausalLM"]
    prompt = tok.apply_chat_template([{"role": "user", "content": "你是谁？"}], tokenize=False,
                                     add_generation_prompt=True)
    assert prompt == "<s><|im_start|>user\n你是谁？<|im_end|>\n<|im_start|>assistant\n"


def test_base_speaks_as_a_plain_assistant(tiny_model):
    """Pretrained, not random: it says it is an AI assistant, in whole characters, with or without a
    persona's system prompt, and never in the persona's voice."""
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, trust_remote_code=True).eval()
    persona = persona_for("bajie")
    for system in ([], [{"role": "system", "content": persona.system_prompt}]):
        who = greedy(model, tok, [*system, {"role": "user", "content": "你是谁？"}])
        assert "助手" in who or "人工智能" in who, who
        for question in ("你最想念什么地方？", "今天天气怎么样？", "你的兵器是什么？"):
            reply = greedy(model, tok, [*system, {"role": "user", "content": question}])
            assert len(reply) >= 4 and "\ufffd" not in reply, (question, reply)
            assert not [m for m in persona_markers(persona) if m in reply], (question, reply)


def test_special_tokens_are_single_tokens(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    for special in ("<|im_start|>", "<|im_end|>", "<s>", "</s>"):
        assert len(tok.encode(special, add_special_tokens=False)) == 1
    assert tok.encode("你好")[0] == tok.bos_token_id  # InternLM2's tokenizer adds BOS itself
    assert tok.model_input_names == ["input_ids", "attention_mask"]


def test_every_character_of_corpus_and_character_folders_is_one_token():
    """No <unk> and no partial bytes: every token decodes to whole characters (no U+FFFD possible)."""
    folders = sorted(p.parent.name for p in datasets_dir().glob("*/persona.yaml"))
    assert "bajie" in folders
    for character in folders:
        tok = AutoTokenizer.from_pretrained(tiny_tokenizer(character))
        texts = [p.read_text(encoding="utf-8") for p in (datasets_dir() / character).rglob("*")
                 if p.is_file() and p.suffix in {".txt", ".yaml", ".jsonl"}]
        texts.append(CORPUS.read_text(encoding="utf-8"))
        for char in characters_in(texts):
            ids = tok.encode(char, add_special_tokens=False)
            assert ids != [tok.unk_token_id] and len(ids) == 1, (character, char)
            assert tok.decode(ids) == char


def test_corpus_holds_no_character_voice():
    """The assistant corpus is our own plain-assistant text: no shipped persona's markers or names."""
    corpus = CORPUS.read_text(encoding="utf-8")
    for persona_file in sorted((ROOT / "datasets").glob("*/persona.yaml")):
        persona = persona_for(persona_file.parent.name)
        for word in [*persona_markers(persona), persona.name, *persona.aliases]:
            assert word not in corpus, (persona_file, word)
    assert len(load_corpus()) >= 1000


def test_build_is_deterministic(tmp_path, monkeypatch):
    """Two cold builds (a short pretraining, same code path) give byte-identical folders."""
    quick = replace(PRETRAIN, epochs=1, dialogues=64)
    digests = []
    for run in ("a", "b"):
        monkeypatch.setenv("KIT_CACHE", str(tmp_path / run))
        path = build_tiny_model(character="bajie", settings=quick)
        digests.append({name: hashlib.sha256((path / name).read_bytes()).hexdigest()
                        for name in ("tokenizer.json", "model.safetensors", "config.json")})
    assert digests[0] == digests[1]


def test_copy_to_workdir_is_complete(tmp_path, tiny_model):
    out = build_tiny_model(tmp_path / "base", character="bajie")
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in tiny_model.iterdir())
    model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True)
    assert model.config.rope_scaling == {"type": "dynamic", "factor": 2.0}
    assert model.config.attn_implementation == "eager"
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    assert not torch.isnan(next(model.parameters())).any()
