"""datasets/CHARACTER/build.yaml: which sources make the dataset, their weights, split and filters."""

from dataclasses import dataclass
from pathlib import Path

from kit.data.clean import Filters
from kit.errors import KitError
from kit.yaml_fields import Field, file_problems, raise_problems, read_yaml

FORMATS = ("script", "novel", "auto", "messages")
FIELDS = {
    "seed": Field("int", "42", lo=0, hi=2**32),
    "eval_fraction": Field("number", "0.1", lo=0, hi=0.9),
    "near_duplicate": Field("number", "0.8", lo=0.1, hi=1),
    "filters": Field("mapping", "{max_chars: 200}", fields={
        "min_chars": Field("int", "2", lo=0, hi=10_000),
        "max_chars": Field("int", "200", lo=1, hi=100_000),
        "min_cjk_ratio": Field("number", "0.5", lo=0, hi=1)}),
    "sources": Field("mappings", "{path: sources/script.txt, format: script}", fields={
        "path": Field("text", "sources/script.txt", required=True),
        "format": Field("choice", "script", choices=FORMATS),
        "weight": Field("number", "2", lo=0, hi=100),
        "require_markers": Field("bool", "false")}),
}


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


def _default_sources(folder: Path) -> list[dict]:
    """Without build.yaml: every .txt (format auto) and .jsonl (messages) under sources/, weight 1."""
    found = sorted((folder / "sources").glob("*.txt")) + sorted((folder / "sources").glob("*.jsonl"))
    return [{"path": str(p.relative_to(folder)), "format": "messages" if p.suffix == ".jsonl" else "auto"}
            for p in found]


def _read(path: Path) -> dict:
    """build.yaml's fields once each is known and of the right kind, and each source exists."""
    doc = read_yaml(path)
    data = {} if doc.data is None else doc.data
    found = file_problems(doc, FIELDS, data)
    entries = data.get("sources") if isinstance(data, dict) and isinstance(data.get("sources"), list) else []
    found += [(doc.line(("sources", i, "path")), f"sources[{i}].path: {path.parent / s['path']} not found",
               "fix the path (relative to the character folder)") for i, s in enumerate(entries)
              if isinstance(s, dict) and isinstance(s.get("path"), str) and not (path.parent / s["path"]).is_file()]
    raise_problems(path, found)
    return data


def _get(data: dict, key: str, default):
    """A field's value; an empty `key:` line (None) reads as absent, as the check above treats it."""
    value = data.get(key)
    return default if value is None else value


def load_build_config(folder: Path) -> BuildConfig:
    path = folder / "build.yaml"
    data = _read(path) if path.is_file() else {}
    entries = data.get("sources") or _default_sources(folder)
    if not entries:
        raise KitError(f"{folder}: no sources", f"put texts under {folder}/sources/ or list them in {path}")
    sources = [Source(folder / e["path"], _get(e, "format", "auto"), float(_get(e, "weight", 1)),
                      _get(e, "require_markers", False)) for e in entries]
    f = data.get("filters") or {}
    filters = Filters(min_chars=_get(f, "min_chars", 2), max_chars=_get(f, "max_chars", 300),
                      min_cjk_ratio=float(_get(f, "min_cjk_ratio", 0.5)))
    return BuildConfig(sources=sources, seed=_get(data, "seed", 42),
                       eval_fraction=float(_get(data, "eval_fraction", 0.1)),
                       near_duplicate=float(_get(data, "near_duplicate", 0.8)), filters=filters)
