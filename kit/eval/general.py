"""General-ability sanity set: short factual/arithmetic prompts with expected substrings, asked with
the persona system prompt (as the model is deployed), so forgetting caused by tuning shows."""

from kit.eval.samples import GeneralItem


def is_correct(reply: str, item: GeneralItem) -> bool:
    return any(e.lower() in reply.lower() for e in item.expect)


def general_accuracy(replies: list[str], items: list[GeneralItem]) -> float:
    return sum(is_correct(r, i) for r, i in zip(replies, items)) / max(len(items), 1)
