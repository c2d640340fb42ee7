"""`kit data check`: validate a training file; every problem as FILE:LINE: reason.

First each line on its own (UTF-8, JSON, roles, order, content, final reply, a reply to learn from,
system prompt); then, if all lines pass, the whole file through what XTuner runs when training: Hugging
Face `load_dataset("json")`, `openai_map_fn`, `template_map_fn` with the internlm2_chat template and,
given a tokenizer, `encode_fn` — so a file that passes here trains. Repeated samples are only a warning.
"""

import importlib.util
import json
import tempfile
from pathlib import Path

ROLES = ("system", "user", "assistant")


def sample_problems(row, need_system: bool = True, system: str | None = None) -> list[str]:
    """What is wrong with one sample in OpenAI `messages` form (empty list: nothing)."""
    if not isinstance(row, dict) or not isinstance(row.get("messages"), list):
        return ["expected a JSON object with a 'messages' list"]
    messages = row["messages"]
    if not messages:
        return ["'messages' is empty"]
    problems = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            problems.append(f"messages[{i}] is not an object with 'role' and 'content'")
        elif m.get("role") not in ROLES:
            problems.append(f"messages[{i}]: unknown role {m.get('role')!r} (use system, user or assistant)")
        elif not isinstance(m.get("content"), str):
            problems.append(f"messages[{i}] ({m['role']}): 'content' must be a string")
        elif not m["content"].strip():
            problems.append(f"messages[{i}] ({m['role']}): empty content")
    if problems:
        return problems
    roles = [m["role"] for m in messages]
    if "system" in roles[1:]:
        problems.append(f"messages[{roles.index('system', 1)}]: a system message must come first")
    rest = roles[1:] if roles[0] == "system" else roles
    for i, role in enumerate(rest):
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected and role != "system":
            offset = len(roles) - len(rest)
            problems.append(f"messages[{i + offset}]: expected a {expected} turn here, got {role} "
                            "(turns must alternate user, assistant)")
            break
    if roles[-1] != "assistant":
        problems.append("no final assistant reply (the last message must be the character's)")
    problems += _loss_problems(messages)
    if need_system and roles[0] != "system":
        problems.append("no system prompt (every sample needs the persona's system prompt first)")
    elif system is not None and roles[0] == "system" and messages[0]["content"].strip() != system.strip():
        problems.append("system prompt differs from persona.yaml's (rebuild with `kit data build`)")
    return problems


def _loss_problems(messages: list[dict]) -> list[str]:
    """XTuner trains on an assistant turn unless its "loss" is false; anything but true reads as false."""
    replies = [(i, m) for i, m in enumerate(messages) if m["role"] == "assistant"]
    problems = [f"messages[{i}] (assistant): \"loss\" must be true or false, got {m['loss']!r} "
                "(XTuner trains on the reply only if it is true)"
                for i, m in replies if not isinstance(m.get("loss", True), bool)]
    if replies and not problems and not any(m.get("loss", True) for _, m in replies):
        problems.append("nothing to learn: every assistant turn has \"loss\": false, so XTuner trains on none "
                        "of this sample (remove \"loss\": false from the reply to learn, or delete the line)")
    return problems


def line_problems(path: Path, system: str | None = None) -> list[str]:
    """Per-line problems of a JSONL file, each as 'FILE:LINE: reason'."""
    problems = []
    raw_lines = Path(path).read_bytes().split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()  # the newline that ends the last line
    if not raw_lines:
        return [f"{path}:1: the file is empty"]
    for no, raw in enumerate(raw_lines, 1):
        where = f"{path}:{no}"
        try:
            line = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as e:
            problems.append(f"{where}: not UTF-8 (byte 0x{raw[e.start]:02x} at byte {e.start + 1}); "
                            "save the file as UTF-8")
            continue
        if not line.strip():
            problems.append(f"{where}: blank line (remove it)")
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"{where}: not valid JSON ({e.msg} at column {e.colno}); "
                            "a line cut short or two samples on one line?")
            continue
        problems += [f"{where}: {p}" for p in sample_problems(row, system=system)]
    return problems


def _xtuner_file(relative: str):
    """One module file of the installed XTuner, run as is but without `import xtuner`, whose
    package __init__ pulls in torch and takes tens of seconds; these files need only mmengine."""
    spec = importlib.util.find_spec("xtuner")
    path = Path(spec.submodule_search_locations[0]) / relative
    module_spec = importlib.util.spec_from_file_location(f"_kit_xtuner_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def xtuner_problems(path: Path, tokenizer: Path | None = None, max_length: int = 2048) -> list[str]:
    """Problems found by running the file through XTuner's own dataset map functions."""
    import datasets

    openai_map_fn = _xtuner_file("dataset/map_fns/dataset_map_fns/openai_map_fn.py").openai_map_fn
    template_map_fn_factory = _xtuner_file("dataset/map_fns/template_map_fn.py").template_map_fn_factory
    internlm2_chat = _xtuner_file("utils/templates.py").PROMPT_TEMPLATE.internlm2_chat
    datasets.disable_progress_bars()
    problems = []
    with tempfile.TemporaryDirectory() as cache:
        try:
            data = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=cache)
        except Exception as e:  # noqa: BLE001 - any loader failure means XTuner cannot read it either
            return [f"{path}:1: Hugging Face `load_dataset('json')` (what XTuner uses) fails: "
                    f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"]
        data = data.map(openai_map_fn, remove_columns=data.column_names)
        data = data.map(template_map_fn_factory(internlm2_chat))
        encode = None
        if tokenizer is not None:
            from functools import partial

            from transformers import AutoTokenizer
            from xtuner.dataset.utils import encode_fn

            tok = AutoTokenizer.from_pretrained(str(tokenizer), trust_remote_code=True)
            encode = partial(encode_fn, tokenizer=tok, max_length=10**9, input_ids_with_output=True)
        for no, row in enumerate(data, 1):
            conv = row["conversation"]
            if not conv or not any(turn["output"].strip() for turn in conv):
                problems.append(f"{path}:{no}: XTuner's openai_map_fn finds no assistant reply to train on")
            elif encode is not None:
                n = len(encode(row)["input_ids"])
                if n > max_length:
                    problems.append(f"{path}:{no}: {n} tokens, more than max_length {max_length}: "
                                    "XTuner would cut the reply off (shorten it or raise max_length)")
    return problems


def repeat_warnings(path: Path) -> list[str]:
    """Samples identical to an earlier line, as one 'FILE:LINE: warning: ...' line (empty list: none).

    A warning, not a problem: `kit data build` repeats training samples on purpose (a source's weight),
    but elsewhere a repeat is usually a file concatenated twice, and each copy trains the sample again."""
    if (Path(path).parent / "card.json").is_file():  # a build's own output: its card says how it weighted
        return []
    first, repeats = {}, []  # repeats: (line, line it repeats)
    for no, raw in enumerate(Path(path).read_bytes().split(b"\n"), 1):
        try:
            key = json.dumps(json.loads(raw), sort_keys=True, ensure_ascii=False)
        except ValueError:  # not JSON (blank, cut short, not UTF-8): line_problems reports those
            continue
        if key in first:
            repeats.append((no, first[key]))
        first.setdefault(key, no)
    if not repeats:
        return []
    shown = ", ".join(f"{no} (= line {earlier})" for no, earlier in repeats[:10])
    more = f" and {len(repeats) - 10} more" if len(repeats) > 10 else ""
    return [f"{path}:{repeats[0][0]}: warning: {len(repeats)} sample(s) repeat an earlier line exactly: lines "
            f"{shown}{more}; each copy trains that sample once more: keep them only if the repeat is on purpose "
            "(as build.yaml's weight does), else delete them"]


def check_file(path: Path, system: str | None = None, tokenizer: Path | None = None,
               max_length: int = 2048) -> list[str]:
    problems = line_problems(path, system)
    return problems or xtuner_problems(path, tokenizer, max_length)
