"""persona.yaml: the one source of truth for a character.

It feeds the system prompt of every training sample, the recipe's EvaluateChatHook, the merged
model's chat template, the LMDeploy chat template, the Streamlit default and the eval prompts.
"""

from dataclasses import dataclass, field
from pathlib import Path

from kit.errors import KitError
from kit.paths import character_dir
from kit.yaml_fields import Field, file_problems, raise_problems, read_yaml

FIELDS = {
    "character": Field("text", "huanhuan"),
    "name": Field("text", "猪八戒", required=True),
    "aliases": Field("texts", "八戒"),
    "system_prompt": Field("text", "你是猪八戒，……", required=True),
    "style_markers": Field("texts", "俺老猪"),
    "catchphrases": Field("texts", "猴哥，救命啊"),
    "probe_questions": Field("texts", "你是谁？", required=True),
    "topics": Field("texts", "高老庄"),
    "sample_lines": Field("texts", "师父，歇歇再走吧！"),
}


@dataclass(frozen=True)
class Persona:
    character: str  # folder id under datasets/, e.g. bajie
    name: str  # display name, e.g. 猪八戒
    system_prompt: str
    probe_questions: list[str]
    aliases: list[str] = field(default_factory=list)
    style_markers: list[str] = field(default_factory=list)
    catchphrases: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    sample_lines: list[str] = field(default_factory=list)
    path: Path | None = None


def load_persona(path: Path | str) -> Persona:
    path = Path(path)
    if not path.is_file():
        raise KitError(f"persona file not found: {path}", "create it; see datasets/bajie/persona.yaml")
    doc = read_yaml(path)
    raise_problems(path, file_problems(doc, FIELDS, doc.data))
    data = doc.data
    lists = {key: [v.strip() for v in data.get(key) or []] for key, f in FIELDS.items() if f.kind == "texts"}
    return Persona(character=(data.get("character") or path.parent.name).strip(), name=data["name"].strip(),
                   system_prompt=data["system_prompt"].strip(), path=path, **lists)


def persona_for(character: str) -> Persona:
    """datasets/CHARACTER/persona.yaml; the folder name is the character's id everywhere downstream."""
    persona = load_persona(character_dir(character) / "persona.yaml")
    if persona.character != character:  # e.g. a copy of 八戒's file that still says `character: bajie`
        line = read_yaml(persona.path).line(("character",))
        raise KitError(f"{persona.path}:{line}: character {persona.character!r}, but the folder is {character!r}",
                       f"write `character: {character}` there (or delete the line): the folder names the character")
    return persona
