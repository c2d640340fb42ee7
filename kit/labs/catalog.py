"""labs/labs.yaml: the course's labs, in order, with the guide file, GPU slice and time of each."""

from dataclasses import dataclass
from pathlib import Path

import yaml

from kit.errors import KitError
from kit.paths import labs_dir

FIELDS = ("n", "file", "title", "slice", "minutes")


@dataclass(frozen=True)
class Lab:
    n: int
    file: str
    title: str
    slice: str
    minutes: str

    @property
    def path(self) -> Path:
        return labs_dir() / self.file


def load_labs() -> list[Lab]:
    index = labs_dir() / "labs.yaml"
    if not index.is_file():
        raise KitError(f"no course index at {index}", "run kit from the kit checkout, or set KIT_HOME to it")
    entries = yaml.safe_load(index.read_text(encoding="utf-8")) or []
    labs = []
    for i, entry in enumerate(entries):
        missing = [f for f in FIELDS if f not in (entry or {})]
        if missing:
            raise KitError(f"{index}: entry {i} lacks {', '.join(missing)}", f"give every lab: {', '.join(FIELDS)}")
        labs.append(Lab(int(entry["n"]), str(entry["file"]), str(entry["title"]), str(entry["slice"]),
                        str(entry["minutes"])))
    return sorted(labs, key=lambda lab: lab.n)


def get_lab(n: int) -> Lab:
    labs = load_labs()
    for lab in labs:
        if lab.n == n:
            return lab
    raise KitError(f"no lab {n}", f"labs are {', '.join(str(lab.n) for lab in labs)}: see `kit lab list`")
