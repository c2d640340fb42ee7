"""persona.yaml and build.yaml: read with the line of every field, then checked field by field.

A misspelled key (`style_marker:`) or a quoted `"false"` would otherwise be read without a word and
change the dataset, so every key must be a known field of the right type. All of a file's problems are
raised at once, each as FILE:LINE, the field and the fix.
"""

import difflib
from dataclasses import dataclass
from pathlib import Path

import yaml

from kit.errors import KitError


@dataclass(frozen=True)
class Field:
    """One field: its kind, an example value for the fix, and for a mapping or list of mappings, theirs."""

    kind: str  # text | texts (list of non-empty strings) | bool | int | number | choice | mapping | mappings
    example: str
    required: bool = False
    lo: float = 0
    hi: float = 0
    choices: tuple[str, ...] = ()
    fields: dict | None = None


@dataclass(frozen=True)
class YamlFile:
    path: Path
    data: object
    lines: dict  # (key or index, ...) -> 1-based line where that field or item starts
    duplicates: list  # (line, what, fix) of each key given twice: YAML would keep only the last

    def line(self, where: tuple) -> int:
        """The line of `where`, or of the nearest enclosing field that has one."""
        while where not in self.lines:
            where = where[:-1]
        return self.lines[where]


def read_yaml(path: Path) -> YamlFile:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[:e.start].count(b"\n") + 1
        raise KitError(f"{path}:{line}: not UTF-8 text", "save the file as UTF-8") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()  # what yaml.compose returns: every node knows its line
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise KitError(f"{where}: not valid YAML ({getattr(e, 'problem', None) or e})",
                       "check indentation and quote strings that contain ':'") from None
    finally:
        loader.dispose()
    lines = {(): 1}
    duplicates = []
    if node is not None:
        _node_lines(node, (), lines, duplicates)
    return YamlFile(path, data, lines, duplicates)


def _node_lines(node, where: tuple, lines: dict, duplicates: list) -> None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            at = where + (str(key.value),)
            if at in lines:
                duplicates.append((key.start_mark.line + 1, f"field '{name(at)}' is given twice "
                                   f"(lines {lines[at]} and {key.start_mark.line + 1}); YAML keeps only the last",
                                   "delete one of them"))
            lines[at] = key.start_mark.line + 1
            _node_lines(value, at, lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[where + (i,)] = item.start_mark.line + 1
            _node_lines(item, where + (i,), lines, duplicates)


def name(where: tuple) -> str:
    """('sources', 0, 'weight') -> 'sources[0].weight'."""
    out = ""
    for part in where:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else part
    return out


def _describe(value) -> str:
    kind = {str: "the string", bool: "the boolean", int: "the number", float: "the number",
            list: "a list", dict: "a mapping", type(None): "nothing"}.get(type(value), type(value).__name__)
    return kind if isinstance(value, (list, dict, type(None))) else f"{kind} {value!r}"


def _value_problem(field: Field, key: str, value) -> tuple[str, str] | None:
    """(what is wrong, fix) for a value of the wrong kind, or None."""
    got = f"got {_describe(value)}"
    if field.kind == "text" and not (isinstance(value, str) and value.strip()):
        return f"must be a non-empty string, {got}", f"e.g. {key}: {field.example}"
    if field.kind == "texts" and not isinstance(value, list):
        return (f"must be a list of non-empty strings, {got}",
                f"write one '- item' line each under {key}:, e.g. - {field.example}")
    if field.kind == "bool" and not isinstance(value, bool):
        return f"must be true or false, {got}", f"e.g. {key}: {field.example}"
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if field.kind in ("int", "number") and not (number and field.lo <= value <= field.hi):
        whole = "a whole number" if field.kind == "int" else "a number"
        return f"must be {whole} from {field.lo} to {field.hi}, {got}", f"e.g. {key}: {field.example}"
    if field.kind == "int" and not isinstance(value, int):
        return f"must be a whole number, {got}", f"e.g. {key}: {field.example}"
    if field.kind == "choice" and value not in field.choices:
        return f"must be one of {', '.join(field.choices)}, {got}", f"e.g. {key}: {field.example}"
    if field.kind == "mapping" and not isinstance(value, dict):
        return f"must be a mapping, {got}", f"e.g. {key}: {field.example}"
    if field.kind == "mappings" and not isinstance(value, list):
        return f"must be a list, {got}", f"write one '- item' line each under {key}:, e.g. - {field.example}"
    return None


def problems(doc: YamlFile, fields: dict, value, where: tuple = ()) -> list[tuple[int, str, str]]:
    """(line, what is wrong, fix) for every problem of `value`, the mapping at `where`, and what it holds."""
    label = name(where) or doc.path.name
    if not isinstance(value, dict):
        return [(doc.line(where), f"{label} must be a mapping of fields ({', '.join(fields)}), "
                 f"got {_describe(value)}", f"see datasets/bajie/{doc.path.name} for the layout")]
    found = []
    for key in value:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            fix = f"did you mean '{close[0]}'?" if close else f"remove it; the fields are {', '.join(fields)}"
            found.append((doc.line(where + (str(key),)), f"'{key}' is not a field of {label}", fix))
    for key, field in fields.items():
        at = where + (key,)
        given = value.get(key)
        if given is None or (field.required and given in ("", [])):  # an empty `key:` line reads as absent
            if field.required:
                what = f"missing field '{name(at)}'" if given is None else f"field '{name(at)}' is empty"
                found.append((doc.line(at), what, f"e.g. {key}: {field.example}"))
            continue
        found += _field_problems(doc, field, given, at)
    return found


def _unquoted(value):
    """What a quoted scalar would be without its quotes ("false" -> False), else None."""
    try:
        plain = yaml.safe_load(value) if isinstance(value, str) else None
    except yaml.YAMLError:
        return None
    return None if isinstance(plain, str) else plain


def _field_problems(doc: YamlFile, field: Field, value, at: tuple) -> list[tuple[int, str, str]]:
    wrong = _value_problem(field, at[-1], value)
    if wrong:
        what, fix = wrong
        plain = _unquoted(value)
        if plain is not None and _value_problem(field, at[-1], plain) is None:
            # A quoted "false" is a string, and Python counts any non-empty string as true.
            what += " (the quotes make it a string)"
            fix = f"write {at[-1]}: {value.strip()} without quotes"
        return [(doc.line(at), f"field '{name(at)}' {what}", fix)]
    if field.kind == "texts":
        return [(doc.line(at + (i,)), f"field '{name(at + (i,))}' must be a non-empty string, got {_describe(v)}",
                 f"write each item as - {field.example}") for i, v in enumerate(value)
                if not (isinstance(v, str) and v.strip())]
    if field.kind == "mapping":
        return problems(doc, field.fields, value, at)
    if field.kind == "mappings":
        return [p for i, item in enumerate(value) for p in problems(doc, field.fields, item, at + (i,))]
    return []


def file_problems(doc: YamlFile, fields: dict, value) -> list[tuple[int, str, str]]:
    """Every problem of a whole file whose content is `value` (the data, or what an empty file means)."""
    return doc.duplicates + problems(doc, fields, value)


def raise_problems(path: Path, found: list[tuple[int, str, str]]) -> None:
    """One KitError with every problem, in line order; nothing if there are none."""
    if len(found) == 1:
        line, what, fix = found[0]
        raise KitError(f"{path}:{line}: {what}", fix)
    if found:
        raise KitError(f"{len(found)} problems in {path}:\n" + "\n".join(
            f"  {path}:{line}: {what}\n    fix: {fix}" for line, what, fix in sorted(found, key=lambda p: p[0])))

