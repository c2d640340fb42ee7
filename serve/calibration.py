"""Calibration text for AWQ from the character's own data (LMDeploy's stock sets need a download).

Order of preference: an explicit file; the training JSONL next to the model (DIR/data/train.jsonl after
`kit demo`); the built JSONL files and sources under datasets/CHARACTER/; the persona's lines. Chat
samples are rendered in the model's ChatML form, so the activations seen in calibration are the ones
the served model sees.
"""

from pathlib import Path

from kit import chat_format
from kit.data.samples import read_jsonl
from kit.errors import KitError
from kit.paths import character_dir
from kit.persona import persona_for
from kit.workspace import Workspace


def texts_from_file(path: Path) -> list[str]:
    path = Path(path)
    if path.suffix != ".jsonl":
        return [t for t in path.read_text(encoding="utf-8").split("\n\n") if t.strip()]
    texts = []
    for lineno, row in read_jsonl(path):
        if isinstance(row.get("messages"), list):
            texts.append(chat_format.render(row["messages"]))
        elif isinstance(row.get("text"), str):
            texts.append(row["text"])
        else:
            raise KitError(f"{path}:{lineno}: expected a 'messages' list or a 'text' field")
    return texts


def calibration_texts(character: str, model: Path, explicit: Path | None = None) -> tuple[list[str], str]:
    """The texts and a short description of where they came from."""
    if explicit is not None:
        return texts_from_file(explicit), str(explicit)
    near = Workspace.around(model).train_file
    if near.is_file():
        return texts_from_file(near), str(near)
    folder = character_dir(character)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".jsonl", ".txt"))
    texts = [t for p in files for t in texts_from_file(p)]
    persona = persona_for(character)
    texts += [chat_format.render([{"role": "system", "content": persona.system_prompt},
                                   {"role": "user", "content": q}]) for q in persona.probe_questions]
    texts += persona.sample_lines
    return texts, f"{folder} ({len(files)} files + persona.yaml)"
