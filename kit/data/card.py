"""The dataset card: what went in, what dedup and the filters removed, turns and token lengths."""

import json
from collections import Counter
from pathlib import Path
from statistics import mean, median

from kit import atomic
from kit.artifacts import persona_digest
from kit.persona import Persona


def token_lengths(samples: list[dict], tok) -> list[int]:
    """Tokens per sample as the model sees it: the tokenizer's chat template over all messages."""
    if tok.chat_template:
        return [len(tok.apply_chat_template(s["messages"], tokenize=True)) for s in samples]
    return [len(tok("\n".join(m["content"] for m in s["messages"]))["input_ids"]) for s in samples]


def reply_lengths(samples: list[dict], tok) -> list[int]:
    """Tokens per assistant turn: what the loss is on, without the system prompt every sample repeats."""
    return [len(tok(m["content"], add_special_tokens=False)["input_ids"])
            for s in samples for m in s["messages"] if m["role"] == "assistant"]


def _stats(values: list[int]) -> dict:
    if not values:
        return {}
    ordered = sorted(values)
    return {"min": ordered[0], "mean": round(mean(values), 1), "median": median(values),
            "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], "max": ordered[-1]}


def length_figure(train: list[int], held_out: list[int]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    bins = min(30, max(5, len(set(train + held_out))))
    ax.hist([train, held_out], bins=bins, label=["train", "eval"], stacked=True)
    ax.set_xlabel("tokens per reply (assistant turns, no system prompt)")
    ax.set_ylabel("replies")
    ax.legend()
    fig.tight_layout()
    return fig


def _histogram(train: list[int], held_out: list[int], png: Path) -> None:
    import matplotlib.pyplot as plt

    fig = length_figure(train, held_out)
    fig.savefig(png)
    plt.close(fig)


def write_card(out: Path, *, character: str, persona: Persona, sources: list[dict], train: list[dict],
               held_out: list[dict], tokenizer: Path, settings: dict, counted_with: str = "") -> dict:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer), trust_remote_code=True)
    train_tokens = token_lengths(train, tok)
    eval_tokens = token_lengths(held_out, tok)
    removed = Counter()
    for s in sources:
        removed.update(s["removed"])
    card = {
        "character": character, "persona_digest": persona_digest(persona), "name": persona.name,
        "counts": {"train": len(train), "eval": len(held_out)},
        "turns": {str(k): v for k, v in sorted(Counter(
            sum(m["role"] == "assistant" for m in s["messages"]) for s in train + held_out).items())},
        "tokens": {"tokenizer": str(tokenizer), "train": _stats(train_tokens),
                   "eval": _stats(eval_tokens), "total_train": sum(train_tokens)},
        "removed": dict(sorted(removed.items())),
        "sources": sources,
        "settings": settings,
        "histogram": "length_hist.png",
    }
    _histogram(reply_lengths(train, tok), reply_lengths(held_out, tok), out / "length_hist.png")
    atomic.write_text(out / "card.json", json.dumps(card, ensure_ascii=False, indent=2) + "\n")
    atomic.write_text(out / "card.md", render_markdown(card, counted_with))
    return card


def render_markdown(card: dict, counted_with: str = "") -> str:
    rows = "\n".join(
        f"| {s['path']} | {s['format']} | {s['weight']} | {s['found']} | {s['kept']} | {s['eval']} | "
        f"{s['train']} | {', '.join(f'{k}: {v}' for k, v in s['removed'].items()) or '-'} |"
        for s in card["sources"])
    tokens = card["tokens"]
    return f"""# Dataset card: {card['name']} ({card['character']})

- train samples: {card['counts']['train']} (after weights), eval samples: {card['counts']['eval']}
  (held out by line: no eval reply appears in train)
- assistant turns per sample: {', '.join(f'{k}: {v}' for k, v in card['turns'].items())}
- tokens per sample (train): {tokens['train']}; eval: {tokens['eval']}
- tokenizer of the token counts: `{tokens['tokenizer']}`{f" ({counted_with})" if counted_with else ""}
- removed: {', '.join(f'{k}: {v}' for k, v in card['removed'].items()) or 'nothing'}

| source | format | weight | found | kept | eval | train | removed |
|---|---|---|---|---|---|---|---|
{rows}

![reply lengths in tokens](length_hist.png)

Settings: `{json.dumps(card['settings'], ensure_ascii=False)}`
"""
