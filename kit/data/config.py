"""datasets/CHARACTER/build.yaml: which sources make the dataset, their weights, split and filters."""

from dataclasses import dataclass
from pathlib import Path

import yaml

from kit.data.clean import Filters
from kit.errors import KitError

FORMATS = ("script", "novel", "auto", "messages")


@dataclass(frozen=True)
class Source:
    path: Path
    format: str
    weight: float
    require_markers: bool  # keep only samples whose replies use a persona style marker


@dataclass(frozen=True)
class BuildConfig:
    sources: list[Source]
    seed: int
    eval_fraction: float
    near_duplicate: float
    filters: Filters


def _number(data: dict, key: str, default, path: Path, lo: float, hi: float):
    value = data.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not lo <= value <= hi:
        raise KitError(f"{path}: field '{key}' must be a number from {lo} to {hi}, got {value!r}",
                       f"e.g. {key}: {default}")
    return value


def _default_sources(folder: Path) -> list[dict]:
    """Without build.yaml: every .txt (format auto) and .jsonl (messages) under sources/, weight 1."""
    found = sorted((folder / "sources").glob("*.txt")) + sorted((folder / "sources").glob("*.jsonl"))
    return [{"path": str(p.relative_to(folder)), "format": "messages" if p.suffix == ".jsonl" else "auto"}
            for p in found]


def load_build_config(folder: Path) -> BuildConfig:
    path = folder / "build.yaml"
    data = {}
    if path.is_file():
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise KitError(f"{path}: not valid YAML ({e})", "check indentation") from None
        if not isinstance(data, dict):
            raise KitError(f"{path}: expected a mapping (seed, eval_fraction, sources, ...)",
                           "see datasets/bajie/build.yaml")
    entries = data.get("sources") or _default_sources(folder)
    if not entries:
        raise KitError(f"{folder}: no sources", f"put texts under {folder}/sources/ or list them in {path}")
    sources = []
    for i, entry in enumerate(entries):
        where = f"{path}: sources[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise KitError(f"{where} needs a 'path'", "e.g. - {path: sources/script.txt, format: script}")
        fmt = entry.get("format", "auto")
        if fmt not in FORMATS:
            raise KitError(f"{where}: unknown format {fmt!r}", f"use one of {', '.join(FORMATS)}")
        source = folder / entry["path"]
        if not source.is_file():
            raise KitError(f"{where}: {source} not found", "fix the path (relative to the character folder)")
        weight = _number(entry, "weight", 1, path, 0, 100)
        sources.append(Source(source, fmt, float(weight), bool(entry.get("require_markers", False))))
    f = data.get("filters") or {}
    if not isinstance(f, dict):
        raise KitError(f"{path}: 'filters' must be a mapping", "e.g. filters: {max_chars: 200}")
    filters = Filters(min_chars=int(_number(f, "min_chars", 2, path, 0, 10_000)),
                      max_chars=int(_number(f, "max_chars", 300, path, 1, 100_000)),
                      min_cjk_ratio=float(_number(f, "min_cjk_ratio", 0.5, path, 0, 1)))
    return BuildConfig(sources=sources, seed=int(_number(data, "seed", 42, path, 0, 2**32)),
                       eval_fraction=float(_number(data, "eval_fraction", 0.1, path, 0, 0.9)),
                       near_duplicate=float(_number(data, "near_duplicate", 0.8, path, 0.1, 1)),
                       filters=filters)
