"""The embedded tiny InternLM2: real architecture, random weights, a tokenizer trained on the fly.

No model hub is reachable in tests or CI, so `kit demo` and the tests build this model. The modeling
code is copied at build time from XTuner's installed package (xtuner/_lite/modelings/internlm2), so it
is the same remote code that InternLM2-Chat-1.8B runs; only sizes differ. The tokenizer is byte-level
BPE trained on the character's own text, with InternLM2's special tokens and chat template.

Builds are deterministic and cached under ~/.cache/kit/tiny-internlm2/<key>: the key hashes the
training text, the sizes and the XTuner version, so a changed dataset gives a new model.
"""

import hashlib
import json
import shutil
from importlib.metadata import version
from pathlib import Path

from kit import atomic
from kit.paths import cache_dir, datasets_dir

# InternLM2's special tokens (names as in internlm2-chat-1_8b's tokenizer), ids 0.. in the tiny vocab.
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<|action_start|>",
                  "<|action_end|>", "<|interpreter|>", "<|plugin|>"]

# InternLM2-Chat's own chat template (ChatML form). kit merge later writes a persona-default variant.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Sizes: small enough to train in seconds on 2 CPU cores, real enough to exercise GQA and RoPE.
TINY_SHAPE = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=172, max_position_embeddings=2048)
VOCAB_SIZE = 2048

# A little general text so that the tokenizer covers ordinary questions, not only the character.
GENERAL_TEXT = """\
你好！请问你是谁？今天天气怎么样？我们一起去吃饭吧。这个问题很有意思，让我想一想。
一二三四五六七八九十，百千万。春夏秋冬，东南西北，上下左右。谢谢你的帮助。
Hello, who are you? What is the capital of France? Paris. One plus one is two.
The quick brown fox jumps over the lazy dog. Please answer briefly and clearly.
"""


def _character_text(character: str) -> str:
    """Every UTF-8 text the character folder holds (persona, sources, built files), in a fixed order."""
    folder = datasets_dir() / character
    parts = [GENERAL_TEXT]
    for path in sorted(folder.rglob("*")):
        if "built" in path.relative_to(folder).parts:  # kit data build's output, not a source
            continue
        if path.is_file() and path.suffix in {".yaml", ".yml", ".txt", ".jsonl", ".json", ".md"}:
            parts.append(path.read_text(encoding="utf-8", errors="ignore"))
    return "\n".join(parts)


def _modeling_dir() -> Path:
    import xtuner

    return Path(xtuner.__file__).parent / "_lite" / "modelings" / "internlm2"


def _train_tokenizer(text: str, out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(text.splitlines(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>",
        additional_special_tokens=SPECIAL_TOKENS[3:], chat_template=CHAT_TEMPLATE,
        # generate() rejects token_type_ids, which PreTrainedTokenizerFast would otherwise return.
        model_input_names=["input_ids", "attention_mask"], clean_up_tokenization_spaces=False,
    )
    # InternLM2's tokenizer adds BOS itself; XTuner's internlm2_chat template relies on that.
    from tokenizers import processors

    fast.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    fast.save_pretrained(out)


def _write_model(out: Path, vocab_size: int, seed: int) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    for name in ("configuration_internlm2.py", "modeling_internlm2.py"):
        shutil.copy(_modeling_dir() / name, out / name)
    config = {
        "architectures": ["InternLM2ForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_internlm2.InternLM2Config",
            "AutoModel": "modeling_internlm2.InternLM2ForCausalLM",
            "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM",
        },
        "model_type": "internlm2",
        "vocab_size": vocab_size,
        "bias": False,
        "rms_norm_eps": 1e-5,
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "rope_theta": 1000000,
        # InternLM2-Chat-1.8B ships dynamic NTK scaling; a null here also breaks LMDeploy 0.18's engine.
        "rope_scaling": {"type": "dynamic", "factor": 2.0},
        "attn_implementation": "eager",
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "use_cache": True,
        **TINY_SHAPE,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    cfg = AutoConfig.from_pretrained(out, trust_remote_code=True)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, trust_remote_code=True, torch_dtype=torch.float32)
    model.generation_config.eos_token_id = [2, 4]  # </s> and <|im_end|>: InternLM2-Chat stops on both
    model.generation_config.pad_token_id = 2
    model.save_pretrained(out, safe_serialization=True)
    # save_pretrained records the (temporary) build folder; drop it so builds are byte-identical.
    saved = json.loads((out / "config.json").read_text(encoding="utf-8"))
    saved.pop("_name_or_path", None)
    (out / "config.json").write_text(json.dumps(saved, indent=2, sort_keys=True), encoding="utf-8")
    # save_pretrained does not keep the remote-code files' relative import target; copy again to be sure.
    for name in ("configuration_internlm2.py", "modeling_internlm2.py"):
        shutil.copy(_modeling_dir() / name, out / name)


def build_tiny_model(out: Path | None = None, character: str = "bajie", seed: int = 0) -> Path:
    """Build (or reuse from cache) the tiny InternLM2 for `character`; copy it to `out` if given."""
    text = _character_text(character)
    key = hashlib.sha256(json.dumps(
        [text, TINY_SHAPE, VOCAB_SIZE, seed, version("xtuner"), version("transformers")]).encode()
    ).hexdigest()[:16]
    cached = cache_dir() / "tiny-internlm2" / key
    if not (cached / "config.json").exists():
        with atomic.staged_dir(cached) as stage:
            _train_tokenizer(text, stage)
            from transformers import AutoTokenizer

            vocab = len(AutoTokenizer.from_pretrained(stage))
            _write_model(stage, vocab, seed)
    if out is None:
        return cached
    out = Path(out)
    with atomic.staged_dir(out) as stage:
        shutil.copytree(cached, stage, dirs_exist_ok=True)
    return out
