"""persona.yaml: the one source of truth for a character.

It feeds the system prompt of every training sample, the recipe's EvaluateChatHook, the merged
model's chat template, the LMDeploy chat template, the Streamlit default and the eval prompts.
"""

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kit.errors import KitError
from kit.paths import character_dir

REQUIRED = ("name", "system_prompt", "probe_questions")


@dataclass(frozen=True)
class Persona:
    character: str  # folder id under datasets/, e.g. "bajie"
    name: str  # display name, e.g. 猪八戒
    system_prompt: str
    probe_questions: list[str]
    aliases: list[str] = field(default_factory=list)
    style_markers: list[str] = field(default_factory=list)
    catchphrases: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    sample_lines: list[str] = field(default_factory=list)
    path: Path | None = None


def _string_list(data: dict, key: str, path: Path) -> list[str]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise KitError(f"{path}: field '{key}' must be a list of non-empty strings",
                       f"write it as\n  {key}:\n    - 第一条\n    - 第二条")
    return [v.strip() for v in value]


def load_persona(path: Path | str) -> Persona:
    path = Path(path)
    if not path.is_file():
        raise KitError(f"persona file not found: {path}", "create it; see datasets/bajie/persona.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise KitError(f"{where}: not valid YAML ({getattr(e, 'problem', e)})",
                       "check indentation and quote strings that contain ':'") from None
    except UnicodeDecodeError:
        raise KitError(f"{path}: not UTF-8 text", "save the file as UTF-8") from None
    if not isinstance(data, dict):
        raise KitError(f"{path}: expected a mapping of fields (name, system_prompt, ...)",
                       "see datasets/bajie/persona.yaml for the layout")
    for key in REQUIRED:
        if not data.get(key):
            raise KitError(f"{path}: missing field '{key}'", "see datasets/bajie/persona.yaml")
    if not isinstance(data["name"], str) or not isinstance(data["system_prompt"], str):
        raise KitError(f"{path}: fields 'name' and 'system_prompt' must be strings")
    return Persona(
        character=str(data.get("character") or path.parent.name),
        name=data["name"].strip(),
        system_prompt=data["system_prompt"].strip(),
        probe_questions=_string_list(data, "probe_questions", path),
        aliases=_string_list(data, "aliases", path),
        style_markers=_string_list(data, "style_markers", path),
        catchphrases=_string_list(data, "catchphrases", path),
        topics=_string_list(data, "topics", path),
        sample_lines=_string_list(data, "sample_lines", path),
        path=path,
    )


def persona_for(character: str) -> Persona:
    return load_persona(character_dir(character) / "persona.yaml")
