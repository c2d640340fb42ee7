"""Where things live: the project tree (recipes/, datasets/) and kit's cache."""

import os
from pathlib import Path

from kit.errors import KitError

# The checkout that holds recipes/ and datasets/ (kit is installed editable from it). A user may point
# KIT_HOME at another tree with the same layout, e.g. their own character project.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def project_root() -> Path:
    return Path(os.environ.get("KIT_HOME", PACKAGE_ROOT)).resolve()


def datasets_dir() -> Path:
    return project_root() / "datasets"


def recipes_dir() -> Path:
    return project_root() / "recipes"


def labs_dir() -> Path:
    return project_root() / "labs"


def character_dir(character: str) -> Path:
    path = datasets_dir() / character
    if not path.is_dir():
        known = sorted(p.parent.name for p in datasets_dir().glob("*/persona.yaml"))
        raise KitError(f"no character folder {path}",
                       f"use one of {known} or create {path}/persona.yaml (see docs/persona.md)")
    return path


def cache_dir() -> Path:
    path = Path(os.environ.get("KIT_CACHE", Path.home() / ".cache" / "kit"))
    path.mkdir(parents=True, exist_ok=True)
    return path
