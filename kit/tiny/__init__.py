"""The embedded tiny InternLM2: the real architecture, pretrained on CPU as a plain chat assistant.

No model hub is reachable in tests or CI, so `kit demo`, the labs on CPU and the tests build this
model in place of InternLM2-Chat-1.8B:
- architecture.py: XTuner's InternLM2 modeling code at small sizes (loads with trust_remote_code);
- vocab.py: a one-token-per-character tokenizer with InternLM2's special tokens and ChatML template;
- pretrain.py: a couple of minutes of training on assistant_dialogues.jsonl, so that the base greets,
  says it is an AI assistant and answers everyday questions in readable Chinese.

Builds are deterministic and cached under ~/.cache/kit/tiny-internlm2/<key>, the key hashing the
corpus, the vocabulary, the sizes, the training settings and the library versions. One pretrained
model serves every character; a character folder with characters outside the vocabulary gets a
copy whose vocabulary is extended, with no new pretraining.
"""

import hashlib
import json
import shutil
from importlib.metadata import version
from pathlib import Path

from kit import atomic
from kit.paths import cache_dir, datasets_dir
from kit.tiny.architecture import TINY_SHAPE, copy_modeling_code, new_model, save_model, write_config
from kit.tiny.pretrain import CORPUS, PretrainSettings, load_corpus, train_assistant
from kit.tiny.vocab import characters_in, common_characters, tokenizer_characters, write_tokenizer

PRETRAIN = PretrainSettings()
TEXT_SUFFIXES = {".yaml", ".yml", ".txt", ".jsonl", ".json", ".md"}


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, default=str).encode()).hexdigest()[:16]


def _base_characters() -> list[str]:
    corpus = characters_in(m["content"] for d in load_corpus() for m in d)
    return sorted(common_characters() | corpus)


def _character_texts(character: str | None) -> list[str]:
    """Every UTF-8 text the character folder holds (persona, sources), not kit data build's output."""
    if character is None:
        return []
    folder = datasets_dir() / character
    return [path.read_text(encoding="utf-8", errors="ignore") for path in sorted(folder.rglob("*"))
            if path.is_file() and path.suffix in TEXT_SUFFIXES
            and "built" not in path.relative_to(folder).parts]


def _new_characters(character: str | None, known: list[str]) -> list[str]:
    """The characters of `character`'s folder that `known` lacks, in a fixed order."""
    return sorted(characters_in(_character_texts(character)) - set(known))


def _cached(name: str, key: str, build) -> Path:
    """cache_dir()/tiny-internlm2/<name>-<key>, built by `build(stage)` the first time."""
    path = cache_dir() / "tiny-internlm2" / f"{name}-{key}"
    if not path.is_dir():  # staged_dir puts it there only once it is complete
        with atomic.staged_dir(path) as stage:
            build(stage)
    return path


def _pretrained(settings: PretrainSettings) -> Path:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.progress import TimeRemainingColumn
    from transformers import AutoTokenizer

    characters = _base_characters()

    def build(stage: Path) -> None:
        write_tokenizer(characters, stage)
        tokenizer = AutoTokenizer.from_pretrained(stage)
        write_config(stage, len(tokenizer))
        copy_modeling_code(stage)
        model = new_model(stage, settings.seed)
        with Progress(TextColumn("[bold]tiny InternLM2: pretraining as a chat assistant"), BarColumn(),
                      MofNCompleteColumn(), TextColumn("loss [cyan]{task.fields[loss]}"), TimeElapsedColumn(),
                      TextColumn("eta"), TimeRemainingColumn(), console=Console(stderr=True)) as progress:
            losses = train_assistant(model, tokenizer, settings, progress)
        save_model(model, stage)
        (stage / "pretrain_loss.json").write_text(json.dumps([round(x, 4) for x in losses]), encoding="utf-8")

    key = _key(CORPUS.read_text(encoding="utf-8"), characters, TINY_SHAPE, vars(settings),
               *(version(p) for p in ("xtuner", "transformers", "torch")))
    return _cached("base", key, build)


def _extended(pretrained: Path, extra: list[str]) -> Path:
    """A copy of `pretrained` whose vocabulary also holds `extra` (appended: old ids do not move)."""
    def build(stage: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        write_tokenizer(tokenizer_characters(pretrained) + extra, stage)
        model = AutoModelForCausalLM.from_pretrained(pretrained, trust_remote_code=True)
        old = model.get_input_embeddings().weight.shape[0]
        model.resize_token_embeddings(old + len(extra), mean_resizing=False)
        inputs, outputs = model.get_input_embeddings().weight, model.get_output_embeddings().weight
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            # Output rows at the average: a new character is no likelier than a typical unused one, so
            # the base still never says it. Input rows apart from each other, so that the LoRA run
            # (on the embedding too, in the recipe's CPU variant) can tell them apart.
            outputs[old:] = outputs[:old].mean(dim=0)
            noise = torch.randn(len(extra), inputs.shape[1], generator=generator)
            inputs[old:] = inputs[:old].mean(dim=0) + noise * inputs[:old].std(dim=0)
        save_model(model, stage)

    return _cached("base", _key(pretrained.name, extra), build)


def tiny_tokenizer(character: str | None = None) -> Path:
    """The tiny model's tokenizer for `character`, without building the model (token counts)."""
    characters = _base_characters()
    extra = _new_characters(character, characters)
    return _cached("tokenizer", _key(characters + extra), lambda stage: write_tokenizer(characters + extra, stage))


def build_tiny_model(out: Path | None = None, character: str | None = None,
                     settings: PretrainSettings = PRETRAIN) -> Path:
    """The pretrained tiny InternLM2 (built or taken from the cache), its vocabulary covering
    `character`'s folder; copied to `out` if given."""
    model = _pretrained(settings)
    extra = _new_characters(character, tokenizer_characters(model))
    if extra:
        model = _extended(model, extra)
    if out is None:
        return model
    out = Path(out)
    with atomic.staged_dir(out) as stage:
        shutil.copytree(model, stage, dirs_exist_ok=True)
    return out
