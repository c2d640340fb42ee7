"""The tiny model's tokenizer: one token per character, so no reply can decode to broken bytes.

A byte-level BPE lets a small model emit half of a character's UTF-8 bytes, which decodes to U+FFFD
(the "garbled" replies of the first demo). Here every token is a whole character: printable ASCII,
Chinese and full-width punctuation (GB2312 rows 1 and 3) and every character of the assistant corpus,
about 2,000 in all: a small output layer keeps pretraining fast. A character folder's own characters
(八戒's 俺 and 猪 are in no assistant's vocabulary) are appended at the end of the vocabulary, so the
pretrained ids never move and the persona's words are learned in the LoRA run.
"""

from pathlib import Path

from kit.chat_format import BOS, CHAT_TEMPLATE, EOS, IM_END, IM_START

# InternLM2's special tokens (names as in internlm2-chat-1_8b's tokenizer), ids 0.. in the tiny vocab.
SPECIAL_TOKENS = ["<unk>", BOS, EOS, IM_START, IM_END, "<|action_start|>",
                  "<|action_end|>", "<|interpreter|>", "<|plugin|>"]


def _gb2312_row(row: int) -> set[str]:
    """The characters of one GB2312 row (row 1: Chinese punctuation, row 3: full-width ASCII)."""
    return {bytes([0xA0 + row, 0xA0 + cell]).decode("gb2312") for cell in range(1, 95)}


def common_characters() -> set[str]:
    ascii_printable = {chr(c) for c in range(0x20, 0x7F)}
    return _gb2312_row(1) | _gb2312_row(3) | ascii_printable | {"\n"}


def characters_in(texts) -> set[str]:
    return {c for text in texts for c in text if c.isprintable() or c == "\n"}


def write_tokenizer(characters: list[str], out: Path) -> None:
    """A fast tokenizer over SPECIAL_TOKENS + `characters` (in that order) with InternLM2's habits."""
    from tokenizers import Tokenizer, decoders, models, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + characters)}
    # BPE with no merges: every character is its own token, anything unknown is one <unk>.
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.decoder = decoders.Fuse()  # join tokens with nothing between them
    # InternLM2's tokenizer adds BOS itself; XTuner's internlm2_chat template relies on that.
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>",
        additional_special_tokens=SPECIAL_TOKENS[3:], chat_template=CHAT_TEMPLATE,
        # generate() rejects token_type_ids, which PreTrainedTokenizerFast would otherwise return.
        model_input_names=["input_ids", "attention_mask"], clean_up_tokenization_spaces=False,
    )
    fast.save_pretrained(out)


def tokenizer_characters(path: Path) -> list[str]:
    """The characters of a tokenizer written by write_tokenizer, in id order."""
    import json

    vocab = json.loads((Path(path) / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    return [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if t not in SPECIAL_TOKENS]
