"""Pretraining the tiny InternLM2 as a plain, polite Chinese chat assistant, on CPU, in minutes.

The corpus (assistant_dialogues.jsonl, written for kit: greetings, identity, everyday help, simple
knowledge; no character's lines) is rendered with the tokenizer's own chat template and trained on
the user and assistant turns (more Chinese to learn from in the same compute). Half of the
conversations get a system prompt: a generic one, mostly followed by unrelated sentences, so the
assistant learns to answer the user whatever the system prompt says. That is what makes the base a fair "before": given 八戒's
persona prompt, it still answers as a generic assistant, and only the LoRA run gives it the voice.
"""

import json
import random
from dataclasses import dataclass
from pathlib import Path

CORPUS = Path(__file__).with_name("assistant_dialogues.jsonl")
SYSTEM_PROMPTS = (
    "你是一个乐于助人的AI助手。",
    "你是一个AI助手，请用简洁、礼貌的中文回答用户的问题。",
    "你是一个人工智能助手，回答要准确、友好、简短。",
    "请用中文简要回答。",
    "你是一名耐心的助手，用户问什么就答什么。",
    "下面是用户和AI助手的对话。助手礼貌地回答用户的问题。",
)


@dataclass(frozen=True)
class PretrainSettings:
    """Chosen by measurement on a 2-core CPU (docs/tiny-model.md); part of the build's cache key."""

    epochs: int = 24
    batch_size: int = 32
    lr: float = 5e-3
    warmup_steps: int = 20
    final_lr_fraction: float = 0.05  # cosine decay to this share of lr
    system_prompt_share: float = 0.5
    seed: int = 0
    threads: int = 2
    dialogues: int | None = None  # the first N dialogues only (tests of the build itself)


def load_corpus(limit: int | None = None) -> list[list[dict]]:
    lines = CORPUS.read_text(encoding="utf-8").splitlines()[:limit]
    return [json.loads(line)["messages"] for line in lines]


def _with_system_prompt(messages: list[dict], rng: random.Random, sentences: list[str]) -> list[dict]:
    system = rng.choice(SYSTEM_PROMPTS)
    if rng.random() < 0.7:  # unrelated sentences after it: long prompts that say nothing about the user
        system += "".join(rng.sample(sentences, rng.randint(1, 8)))
    return [{"role": "system", "content": system}, *messages]


def encode(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """Token ids of the rendered conversation, and labels that keep the user and assistant turns but
    not the system prompt: the assistant learns to answer, and to ignore what the system prompt says.
    Turn boundaries come from rendering the conversation up to each turn with the chat template."""
    def length(msgs):
        text = tokenizer.apply_chat_template(msgs, tokenize=False) if msgs else tokenizer.bos_token
        return len(tokenizer(text, add_special_tokens=False).input_ids)

    full = tokenizer(tokenizer.apply_chat_template(messages, tokenize=False), add_special_tokens=False).input_ids
    labels = [-100] * len(full)
    for i, message in enumerate(messages):
        if message["role"] != "system":
            start, end = length(messages[:i]), length(messages[:i + 1])
            labels[start:end] = full[start:end]
    return full, labels


def _batches(examples: list[tuple[list[int], list[int]]], batch_size: int, rng: random.Random):
    """Batches of similar length (little padding), in random order."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    pool = batch_size * 8
    batches = []
    for i in range(0, len(order), pool):
        chunk = sorted(order[i:i + pool], key=lambda j: len(examples[j][0]))
        batches += [chunk[k:k + batch_size] for k in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def _tensors(examples, batch: list[int], pad_id: int):
    import torch

    width = max(len(examples[j][0]) for j in batch)
    ids = torch.full((len(batch), width), pad_id)
    labels = torch.full((len(batch), width), -100)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, j in enumerate(batch):
        x, y = examples[j]
        ids[row, :len(x)], labels[row, :len(y)], mask[row, :len(x)] = torch.tensor(x), torch.tensor(y), 1
    return ids, labels, mask


def train_assistant(model, tokenizer, settings: PretrainSettings, progress) -> list[float]:
    """Train `model` in place on the corpus; advance a rich `progress`; return the loss per step."""
    import math

    import torch

    rng = random.Random(settings.seed)
    dialogues = load_corpus(settings.dialogues)
    sentences = [m["content"] for d in dialogues for m in d]
    plain = [encode(tokenizer, d) for d in dialogues]  # rendered once: the template is slow in Python
    epochs = []
    for _ in range(settings.epochs):  # every epoch draws its own system prompts
        examples = [encode(tokenizer, _with_system_prompt(d, rng, sentences))
                    if rng.random() < settings.system_prompt_share else plain[i] for i, d in enumerate(dialogues)]
        epochs.append((examples, _batches(examples, settings.batch_size, rng)))
    total = sum(len(batches) for _, batches in epochs)

    def lr_at(step: int) -> float:
        if step < settings.warmup_steps:
            return settings.lr * (step + 1) / settings.warmup_steps
        done = (step - settings.warmup_steps) / max(total - settings.warmup_steps, 1)
        low = settings.final_lr_fraction
        return settings.lr * (low + (1 - low) * 0.5 * (1 + math.cos(math.pi * done)))

    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.0)
    task = progress.add_task("pretrain", total=total, loss="-")
    losses = []
    model.train()
    try:
        for examples, batches in epochs:
            for batch in batches:
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(len(losses))
                ids, labels, mask = _tensors(examples, batch, tokenizer.pad_token_id)
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(loss.item())
                progress.update(task, advance=1, loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return losses
