"""`kit data build`: datasets/CHARACTER/ sources -> train/eval JSONL + dataset card.

Every sample gets the persona's system prompt (persona.yaml is the one source of truth). Eval is held
out by line: duplicates and near duplicates are removed across all sources first, then a fixed-seed
hash of each reply picks the eval lines, so no eval reply (or a near copy) is ever trained on.
"""

import hashlib
import math
import random
from collections import Counter
from pathlib import Path

from rich.console import Console

from kit.atomic import check_target, staged_dir
from kit.data.card import write_card
from kit.data.check import sample_problems
from kit.data.clean import Deduper, Filters, normalize
from kit.data.config import BuildConfig, Source, load_build_config
from kit.data.extract import extract_lines, read_source
from kit.data.samples import chat, read_jsonl, replies, turns_of, write_jsonl
from kit.errors import KitError
from kit.paths import character_dir, recipes_dir
from kit.persona import Persona, persona_for


def source_samples(source: Source, persona: Persona) -> tuple[list[dict], Counter]:
    """The samples one source yields (persona system prompt set), and what was dropped on the way."""
    dropped = Counter()
    if source.format == "messages":
        samples = []
        for no, row in read_jsonl(source.path):
            problems = sample_problems(row, need_system=False)
            if problems:
                raise KitError(f"{source.path}:{no}: {problems[0]}",
                               f"run `kit data check {source.path}` to see every problem")
            samples.append(chat(persona.system_prompt, turns_of(row)))
        return samples, dropped
    lines, _ = extract_lines(read_source(source.path), [persona.name, *persona.aliases], source.format)
    dropped["no turn before it"] = sum(line.user is None for line in lines)
    return [chat(persona.system_prompt, [(line.user, line.text)]) for line in lines if line.user], dropped


def _eval_count(n: int, fraction: float) -> int:
    if fraction <= 0 or n < 2:
        return 0
    return min(n - 1, max(1, round(n * fraction)))


def _repeat(samples: list[dict], weight: float, seed: int) -> list[dict]:
    """Each sample floor(weight) times, plus one more for a seeded share `weight % 1` of them."""
    whole, part = int(math.floor(weight)), weight % 1
    rng = random.Random(seed)
    return [s for s in samples for _ in range(whole + (rng.random() < part))]


def split_and_mix(config: BuildConfig, persona: Persona, console: Console | None = None):
    """(train, eval, per-source stats) from the sources of `config`."""
    dedup = Deduper(threshold=config.near_duplicate)
    train, held_out, stats = [], [], []
    for i, source in enumerate(config.sources):
        samples, removed = source_samples(source, persona)
        filters = config.filters
        if source.require_markers:
            filters = Filters(**{**filters.__dict__, "markers": tuple(persona.style_markers)})
        kept = []
        for sample in samples:
            why = filters.reason(replies(sample)) or dedup.check(replies(sample))
            if why:
                removed[why] += 1
            else:
                kept.append(sample)
        # Held out by line: a seeded hash of the reply ranks the lines; the first ones go to eval.
        ranked = sorted(kept, key=lambda s: hashlib.sha256(
            f"{config.seed}:{normalize(replies(s))}".encode()).hexdigest())
        n_eval = _eval_count(len(ranked), config.eval_fraction)
        src_eval, src_train = ranked[:n_eval], _repeat(ranked[n_eval:], source.weight, config.seed + i)
        held_out += src_eval
        train += src_train
        stats.append({"path": str(source.path.relative_to(source.path.parents[1])), "format": source.format,
                      "weight": source.weight, "found": len(samples) + removed["no turn before it"],
                      "kept": len(kept), "eval": len(src_eval), "train": len(src_train),
                      "removed": {k: v for k, v in sorted(removed.items()) if v}})
        if console:
            console.print(f"  {stats[-1]['path']}: {len(kept)} kept, {n_eval} eval, {len(src_train)} train")
    random.Random(config.seed).shuffle(train)
    if not train:
        raise KitError("the sources yield no training samples", "check the sources and filters in build.yaml")
    return train, held_out, stats


def counting_tokenizer(character: str, tokenizer: Path | None) -> tuple[Path, str]:
    """The tokenizer the card's token counts come from, and which one it is in words.

    The default is the tiny model's, which splits text otherwise than a real base: said plainly, so that
    nobody sizes max_length for InternLM2-Chat-1.8B from its counts.
    """
    if tokenizer is not None:
        return Path(tokenizer), "given with --tokenizer"
    from kit.tiny import tiny_tokenizer

    said = "the tiny model's, kit's default, not a real base's"
    recipe = recipes_dir() / f"{character}.py"
    if recipe.is_file():
        said += (f"; the real run tokenizes with {recipe.relative_to(recipe.parents[1])}'s base: to count "
                 f"with it, kit data build {character} --tokenizer BASE_FOLDER")
    return tiny_tokenizer(character), said


def build_character(character: str, out_dir: Path | None = None, tokenizer: Path | None = None,
                    force: bool = False) -> Path:
    """Build train.jsonl, eval.jsonl and the card into out_dir (default datasets/CHARACTER/built)."""
    console = Console(stderr=True)
    folder = character_dir(character)
    persona = persona_for(character)
    config = load_build_config(folder)
    out = Path(out_dir) if out_dir else folder / "built"
    check_target(out, record="card.json", force=force, option="-o",
                 protected=[folder / "persona.yaml", folder / "build.yaml",
                            *(folder / s.path for s in config.sources)])
    train, held_out, stats = split_and_mix(config, persona, console)
    tokenizer, counted_with = counting_tokenizer(character, tokenizer)
    console.print(f"  token counts by the tokenizer in {tokenizer}: {counted_with}", soft_wrap=True)
    with staged_dir(out) as stage:
        write_jsonl(stage / "train.jsonl", train)
        write_jsonl(stage / "eval.jsonl", held_out)
        write_card(stage, character=character, persona=persona, sources=stats, train=train,
                   held_out=held_out, tokenizer=tokenizer, counted_with=counted_with,
                   settings={"seed": config.seed, "eval_fraction": config.eval_fraction,
                             "near_duplicate": config.near_duplicate, "filters": config.filters.__dict__})
    return out
