"""What a stage's output says about itself: the character, and the persona file, it was made with.

Every stage writes a small JSON record beside what it made (the data card, kit_merge.json,
kit_adapter.json, kit_quant.json, the eval report), with `character` and `persona_digest`. A later
stage reads the record instead of assuming 八戒: `kit serve`, `kit eval` and `kit quantize` take the character from
the model they are given, `--character` overrides it (with a warning when the two differ), and each
says which persona it uses and where that came from.
"""

import hashlib
import json
from pathlib import Path

from rich.console import Console

from kit.errors import KitError
from kit.persona import Persona, persona_for

# The course's starting character, and the demo's: the only default when nothing records one.
COURSE_CHARACTER = "bajie"

# The record each stage writes into its output folder, in the order a folder is searched.
RECORDS = ("kit_merge.json", "kit_adapter.json", "kit_quant.json", "card.json", "report.json")


def persona_digest(persona: Persona) -> str:
    """Names the exact persona.yaml an artifact was made with: a later edit shows as a changed digest."""
    return hashlib.sha256(Path(persona.path).read_bytes()).hexdigest()[:16]


def persona_record(persona: Persona) -> dict:
    """The fields every stage's record carries."""
    return {"character": persona.character, "persona_digest": persona_digest(persona)}


def read_record(artifact: Path | str) -> tuple[Path, dict] | None:
    """The first stage record in a folder; a quantized model without a character defers to its source."""
    folder = Path(artifact)
    for name in RECORDS:
        path = folder / name
        if path.is_file():
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise KitError(f"{path}: not a readable JSON record ({e})",
                               f"restore it, or re-run the stage that wrote {path.parent}") from e
            if "character" not in record and record.get("source"):
                return read_record(record["source"])
            return path, record
    return None


def choose_persona(option: str | None, artifacts: list[Path | str | None], console: Console) -> Persona:
    """The persona for a command given `--character` (or None) and the artifacts it works on.

    URLs and folders without a record count for nothing. Two artifacts recording different
    characters need an explicit `--character`: guessing would score one with the other's persona.
    """
    found = [(path, record) for a in artifacts if a and not str(a).startswith(("http://", "https://"))
             for path, record in [read_record(a) or (None, None)] if record and record.get("character")]
    recorded = {record["character"] for _, record in found}
    if option:
        persona, source = persona_for(option), "--character"
        for path, record in found:
            if record["character"] != option:
                console.print(f"[yellow]warning:[/] {path} was made for {record['character']!r}; "
                              f"using {option!r} as --character asks", soft_wrap=True)
    elif len(recorded) > 1:
        names = ", ".join(f"{path}: {record['character']!r}" for path, record in found)
        raise KitError(f"the models were made for different characters ({names})",
                       "pass --character NAME to say whose persona to use")
    elif recorded:
        persona, source = persona_for(recorded.pop()), str(found[0][0])
    else:
        persona, source = persona_for(COURSE_CHARACTER), "the course's default: no model given records a character"
    for path, record in found:
        digest = record.get("persona_digest")
        if record["character"] == persona.character and digest and digest != persona_digest(persona):
            console.print(f"[yellow]warning:[/] {persona.path} changed since {path} was made "
                          "(its system prompt or probe questions may differ from the ones trained on)",
                          soft_wrap=True)
    console.print(f"persona: {persona.name} ({persona.character}, from {source})", soft_wrap=True)
    return persona
