"""`kit data extract` glue: pick the persona, extract, write the samples, say what was found."""

from pathlib import Path

from rich.console import Console

from kit.data.extract import extract_lines, read_source
from kit.data.outpath import check_output
from kit.data.samples import chat, write_jsonl
from kit.errors import KitError
from kit.paths import datasets_dir
from kit.persona import load_persona, persona_for


def run_extract(src: Path, character: str, aliases: list[str], fmt: str, persona_path: Path | None,
                out: Path) -> int:
    console = Console(stderr=True)
    own = persona_path is None and (datasets_dir() / character / "persona.yaml").is_file()
    if own:
        persona_path = datasets_dir() / character / "persona.yaml"
    check_output(out, "-o", {"source": src, "persona file": persona_path}, "lines.jsonl")
    names = [character, *aliases]
    if persona_path is not None:
        # The character's own file must name it (a copy of 八戒's still says bajie); --persona is any file.
        persona = persona_for(character) if own else load_persona(persona_path)
        system = persona.system_prompt
        names += [persona.name, *persona.aliases]
    else:
        # No persona yet (a new character): a plain prompt; `kit data build` sets persona.yaml's.
        system = f"你是{character}。请始终以{character}的身份、语气和口头禅说话。"
        console.print(f"[yellow]no persona.yaml for {character!r}: using a plain system prompt[/]")
    lines, used = extract_lines(read_source(src), sorted(set(names), key=len, reverse=True), fmt)
    if not lines:
        raise KitError(f"{src}: no line of {character} found (format {used}; names tried: "
                       f"{', '.join(sorted(set(names)))})",
                       "add the names the text uses with --alias, or set --format script|novel")
    samples = [chat(system, [(line.user, line.text)]) for line in lines if line.user]
    write_jsonl(out, samples)
    opened = len(lines) - len(samples)
    console.print(f"[green]{len(lines)}[/] lines of {character} in {src} (format {used}) → "
                  f"{len(samples)} samples in {out}"
                  + (f"; {opened} skipped: nothing said or narrated before them" if opened else ""))
    return len(samples)
