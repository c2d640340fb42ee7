"""The requests `kit data generate` sends: one per dialogue index, built from persona.yaml only."""

import hashlib
import json

from kit.persona import Persona

# Who talks to the character: varied so that the dialogues differ in register, not only in topic.
ASKERS = ("好奇的网友", "一个小朋友", "路过的村民", "一位多年不见的老朋友", "一位来采访的记者", "一位烦恼的年轻人")


def request_body(persona: Persona, index: int, *, model: str, turns: int, temperature: float,
                 max_tokens: int) -> dict:
    """The chat-completions body for dialogue `index` (deterministic: a re-run sends the same)."""
    topics = persona.topics or ["日常闲聊"]
    topic = topics[index % len(topics)]
    asker = ASKERS[(index // len(topics)) % len(ASKERS)]
    style = "、".join(persona.style_markers) or "（无）"
    catchphrases = "；".join(persona.catchphrases) or "（无）"
    samples = "\n".join(f"- {line}" for line in persona.sample_lines) or "（无）"
    prompt = f"""请为角色「{persona.name}」写一段 {turns} 轮的对话：{asker}和{persona.name}聊「{topic}」，\
{persona.name}用自己的口吻回答。

角色设定：{persona.system_prompt}
常用词：{style}
口头禅：{catchphrases}
台词示例：
{samples}

要求：{persona.name}每句回答不超过 80 字，口语化，符合角色性格，绝不提及 AI 或语言模型；提问要自然、各不相同。
只输出 JSON，不要别的文字，格式：
{{"dialogue": [{{"role": "user", "content": "……"}}, {{"role": "assistant", "content": "……"}}]}}
（第 {index + 1} 段）"""
    return {
        "model": model,
        "messages": [{"role": "system", "content": "你是擅长写角色扮演对话数据的编剧，只输出合法 JSON。"},
                     {"role": "user", "content": prompt}],
        "temperature": temperature,
        "max_tokens": max_tokens,
    }


def request_key(body: dict) -> str:
    """The cache key of a request: a hash of what decides the answer (model, messages, sampling)."""
    fields = {k: body.get(k) for k in ("model", "messages", "temperature", "max_tokens")}
    return hashlib.sha256(json.dumps(fields, ensure_ascii=False, sort_keys=True).encode()).hexdigest()
