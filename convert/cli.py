"""`kit merge`."""

from pathlib import Path

import typer
from rich.console import Console


def merge(
    run: str = typer.Argument(None, help="XTuner work dir, a name under work_dirs/ or runs/, or a "
                              "checkpoint file; default: the run with the newest checkpoint."),
    checkpoint: str = typer.Option(None, "--checkpoint", "-c",
                                   help="e.g. iter_40.pth; default: the run's newest."),
    base: Path = typer.Option(None, help="Base model folder; default: the one the run trained on."),
    out: Path = typer.Option(None, "--out", "-o", help="Merged model folder; default: RUN/merged."),
    adapter_out: Path = typer.Option(None, "--adapter-out",
                                     help="PEFT adapter folder; default: RUN/adapter."),
    dtype: str = typer.Option(None, help="fp16, bf16 or fp32; default: the base's dtype."),
    device: str = typer.Option("auto", help="auto (GPU if it has room, else CPU), cuda or cpu."),
    character: str = typer.Option(None, help="Whose persona goes into the chat template; "
                                  "default: the recipe's `character`."),
    force: bool = typer.Option(False, "--force", help="Replace --out / --adapter-out even if kit did not "
                               "write them (never the run, the base or the data)."),
    allow_base_mismatch: bool = typer.Option(False, "--allow-base-mismatch", help="Merge into a --base "
                                             "whose weights differ from the one trained on (warns)."),
):
    """Newest checkpoint -> HF adapter -> merged HF model, verified, persona chat template."""
    from kit.convert.locate import find_run
    from kit.convert.merge import merge_run
    from kit.workspace import Workspace

    console = Console()
    work_dir = find_run(run)
    if run and Path(run).is_file():  # `kit merge work_dirs/bajie/iter_40.pth` names the checkpoint
        checkpoint = checkpoint or run
    console.rule(f"kit merge {work_dir}")
    adapter_out = adapter_out or Workspace(work_dir).adapter
    merged = merge_run(work_dir, base, adapter_out, out or Workspace(work_dir).merged,
                       checkpoint=checkpoint, dtype=dtype, device=device, character=character,
                       force=force, allow_base_mismatch=allow_base_mismatch, console=console)
    console.print(f"[green]merged model:[/] {merged}  (model card: {merged / 'README.md'})\n"
                  f"[green]adapter:[/] {adapter_out}\n"
                  f"next: kit serve --tuned {merged}")
