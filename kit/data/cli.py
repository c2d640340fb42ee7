"""`kit data ...` commands."""

from pathlib import Path

import typer
from rich.console import Console

from kit.errors import KitError

app = typer.Typer(help="Build a character dataset: extract, generate, check, build.", no_args_is_help=True)


@app.command()
def extract(
    src: Path = typer.Argument(..., help="A script (角色：台词 lines) or novel text, UTF-8."),
    character: str = typer.Option(..., help="Character folder under datasets/ (e.g. bajie) or a name."),
    alias: list[str] = typer.Option([], help="Another name the character goes by (repeatable)."),
    fmt: str = typer.Option("auto", "--format", help="script, novel or auto."),
    persona: Path = typer.Option(None, help="persona.yaml for the system prompt and aliases "
                                 "(default: datasets/CHARACTER/persona.yaml if it exists)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output JSONL (OpenAI messages form)."),
):
    """A character's lines (with the line before as the user turn) from a script or novel."""
    from kit.data.extract_cli import run_extract

    run_extract(src, character, alias, fmt, persona, out)


@app.command()
def generate(
    persona: Path = typer.Option(..., help="persona.yaml: style, catchphrases, sample lines, topics."),
    n: int = typer.Option(..., "-n", min=1, help="How many dialogues to write."),
    base_url: str = typer.Option(..., help="OpenAI-compatible endpoint, e.g. https://api.openai.com/v1."),
    model: str = typer.Option(..., help="Model name at that endpoint."),
    out: Path = typer.Option(..., "--out", "-o", help="Output JSONL (OpenAI messages form)."),
    concurrency: int = typer.Option(4, min=1, help="Calls in flight at once."),
    turns: int = typer.Option(3, min=1, help="Exchanges per dialogue."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", help="Environment variable holding the key."),
    cache: Path = typer.Option(None, help="Call cache (default OUT.cache.jsonl); keep it to resume."),
    timeout: float = typer.Option(60.0, help="Seconds per call before it is retried."),
    retries: int = typer.Option(6, min=0, help="Retries per call on 429/5xx/timeouts."),
    max_requests: int = typer.Option(None, help="Most calls in all (default 2n)."),
    max_total_tokens: int = typer.Option(None, help="Stop sending once the calls used this many tokens."),
    price_in: float = typer.Option(0.0, help="Price per million prompt tokens, for the cost counter."),
    price_out: float = typer.Option(0.0, help="Price per million completion tokens."),
    max_cost: float = typer.Option(None, help="Stop sending once the cost reaches this."),
    temperature: float = typer.Option(0.9),
    require_markers: bool = typer.Option(True, help="Keep only dialogues using a persona style marker."),
):
    """Multi-turn persona dialogues through any OpenAI-compatible API."""
    from kit.data.generate import Settings
    from kit.data.generate import generate as run
    from kit.persona import load_persona

    settings = Settings(model=model, base_url=base_url, n=n, concurrency=concurrency, turns=turns,
                        temperature=temperature, timeout=timeout, retries=retries,
                        max_requests=max_requests, token_cap=max_total_tokens, price_in=price_in,
                        price_out=price_out, cost_cap=max_cost, require_markers=require_markers,
                        api_key_env=api_key_env)
    run(load_persona(persona), settings, out, cache)


@app.command()
def build(
    character: str = typer.Argument(..., help="Folder under datasets/, e.g. bajie."),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder (default datasets/CHARACTER/built)."),
    tokenizer: Path = typer.Option(None, help="Tokenizer for the token-length stats (a local model "
                                   "folder, e.g. internlm2-chat-1_8b); default: the tiny model's."),
    force: bool = typer.Option(False, "--force", help="Replace an -o folder kit did not write (never one "
                               "holding the sources or persona.yaml)."),
):
    """datasets/CHARACTER/ sources -> train/eval JSONL + dataset card."""
    from kit.data.build import build_character

    path = build_character(character, out, tokenizer, force=force)
    Console().print(f"[green]built[/] {path}/train.jsonl, eval.jsonl, card.md, card.json, length_hist.png")


@app.command()
def check(
    file: Path = typer.Argument(..., help="A training file in OpenAI messages JSONL form."),
    persona: Path = typer.Option(None, help="persona.yaml whose system prompt every sample must carry."),
    tokenizer: Path = typer.Option(None, help="Also tokenize as XTuner does and flag over-long samples."),
    max_length: int = typer.Option(2048, help="The recipe's max_length (with --tokenizer)."),
):
    """Validate a training file: every problem as FILE:LINE: reason."""
    from kit.data.check import check_file, repeat_warnings

    if not file.is_file():
        raise KitError(f"file not found: {file}", "check the path")
    system = None
    if persona is not None:
        from kit.persona import load_persona

        system = load_persona(persona).system_prompt
    problems = check_file(file, system, tokenizer, max_length)
    for p in problems:
        typer.echo(p)
    for w in repeat_warnings(file):  # on stderr: a warning does not fail the check
        typer.echo(w, err=True)
    if problems:
        Console(stderr=True).print(f"[red]{len(problems)} problem(s)[/] in {file}")
        raise typer.Exit(1)
    Console(stderr=True).print(f"[green]ok[/] {file}: every sample is valid and loads through XTuner")
