"""InternLM2-Chat's chat format, in one place: ChatML turns, the chat templates kit writes for
transformers and LMDeploy, the ids that end a turn, and the special tokens cleaned from decoded text.

XTuner trains on this format (PROMPT_TEMPLATE.internlm2_chat), so every stage that prompts a model or
reads its output takes it from here: what is served and scored is what was trained.
"""

import json
import re

BOS, EOS = "<s>", "</s>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
GENERATION_PROMPT = f"{IM_START}assistant\n"
# Special tokens that may survive in text decoded without skip_special_tokens (XTuner's sample hook).
SPECIAL_TOKENS = re.compile("|".join(re.escape(t) for t in (BOS, EOS, IM_END, IM_START)))

# The Jinja loop over the turns and the generation prompt, shared by both templates below.
_TURNS = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# InternLM2-Chat's own template: no default system prompt (the tiny base model's tokenizer).
CHAT_TEMPLATE = "{{ bos_token }}" + _TURNS


def render(messages: list[dict], generation_prompt: bool = False) -> str:
    """The ChatML text of `messages`, without BOS (a tokenizer or a completions endpoint adds it)."""
    text = "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in messages)
    return text + (GENERATION_PROMPT if generation_prompt else "")


def persona_chat_template(system_prompt: str) -> str:
    """CHAT_TEMPLATE with the persona as the default system prompt (a merged model's tokenizer), so
    apply_chat_template, LMDeploy's `hf` template and the compare UI speak as the character untold."""
    # json.dumps gives a valid Jinja string literal (Jinja decodes \n, \" and \uXXXX escapes).
    default = json.dumps(system_prompt, ensure_ascii=False)
    return (
        "{% set default_system = " + default + " %}"
        "{{ bos_token }}"
        "{% if not messages or messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\n' + default_system + '<|im_end|>\n' }}{% endif %}"
        + _TURNS
    )


def lmdeploy_chat_template(model_name: str, system_prompt: str) -> dict:
    """LMDeploy's chat-template fields for ChatML turns with `system_prompt` as the default system.

    No BOS here: the tokenizer adds it. A model_name that is not a registered template makes LMDeploy
    use these fields verbatim.
    """
    return {
        "model_name": model_name,
        "system": f"{IM_START}system\n", "meta_instruction": system_prompt, "eosys": f"{IM_END}\n",
        "user": f"{IM_START}user\n", "eoh": f"{IM_END}\n",
        "assistant": GENERATION_PROMPT, "eoa": IM_END, "separator": "\n",
        "capability": "chat", "stop_words": [IM_END],
    }


def stop_ids(tokenizer, generation_config) -> list[int]:
    """Every id that ends a turn: the config's eos ids plus the tokenizer's eos and <|im_end|>
    (InternLM2-Chat stops on both)."""
    ids = generation_config.eos_token_id
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    for token in (tokenizer.eos_token, IM_END):
        tid = tokenizer.convert_tokens_to_ids(token) if token else None
        if tid is not None and tid != tokenizer.unk_token_id and tid not in ids:
            ids.append(tid)
    return ids


def last_reply(decoded: str) -> str:
    """The assistant's last reply in a decoded chat (prompt + generation), special tokens removed."""
    reply = decoded.rsplit(f"{IM_START}assistant", 1)[-1]
    return SPECIAL_TOKENS.sub("", reply).strip()
