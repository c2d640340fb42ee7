"""`kit data ...` commands."""

from pathlib import Path

import typer
from rich.console import Console

from kit.errors import KitError

app = typer.Typer(help="Build a character dataset: extract, generate, check, build.", no_args_is_help=True)


@app.command()
def extract():
    """A character's lines (with the line before as the user turn) from a script or novel."""
    from kit.errors import NotBuiltYet

    raise NotBuiltYet("kit data extract", 3)


@app.command()
def generate():
    """Multi-turn persona dialogues through any OpenAI-compatible API."""
    from kit.errors import NotBuiltYet

    raise NotBuiltYet("kit data generate", 3)


@app.command()
def build(
    character: str = typer.Argument(..., help="Folder under datasets/, e.g. bajie."),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder (default datasets/CHARACTER/built)."),
    tokenizer: Path = typer.Option(None, help="Tokenizer for the token-length stats (a local model "
                                   "folder, e.g. internlm2-chat-1_8b); default: the tiny model's."),
):
    """datasets/CHARACTER/ sources -> train/eval JSONL + dataset card."""
    from kit.data.build import build_character

    path = build_character(character, out, tokenizer)
    Console().print(f"[green]built[/] {path}/train.jsonl, eval.jsonl, card.md, card.json, length_hist.png")


@app.command()
def check(
    file: Path = typer.Argument(..., help="A training file in OpenAI messages JSONL form."),
    persona: Path = typer.Option(None, help="persona.yaml whose system prompt every sample must carry."),
    tokenizer: Path = typer.Option(None, help="Also tokenize as XTuner does and flag over-long samples."),
    max_length: int = typer.Option(2048, help="The recipe's max_length (with --tokenizer)."),
):
    """Validate a training file: every problem as FILE:LINE: reason."""
    from kit.data.check import check_file

    if not file.is_file():
        raise KitError(f"file not found: {file}", "check the path")
    system = None
    if persona is not None:
        from kit.persona import load_persona

        system = load_persona(persona).system_prompt
    problems = check_file(file, system, tokenizer, max_length)
    for p in problems:
        typer.echo(p)
    if problems:
        Console(stderr=True).print(f"[red]{len(problems)} problem(s)[/] in {file}")
        raise typer.Exit(1)
    Console(stderr=True).print(f"[green]ok[/] {file}: every sample is valid and loads through XTuner")
