"""The recipes that ship inside the package (``maskcls/recipes/``; the repository's ``configs/``
points there): a recipe is addressable by name (``maskcls train cpu-pretrained``), listed by
``maskcls recipes``, and copied out to be edited."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from maskcls.errors import UserError

KINDS = {"recipe": "", "space": "search", "corrections": "corrections"}  # what -> subfolder


def recipes_folder() -> Path:
    return Path(str(resources.files("maskcls") / "recipes"))


def recipe_names(kind: str = "recipe") -> list[str]:
    folder = recipes_folder() / KINDS[kind]
    return sorted(path.stem for path in folder.glob("*.yaml"))


def resolve_recipe(path: str | Path, kind: str = "recipe") -> Path:
    """``path`` itself when it exists; else the shipped recipe of that name (``cpu-demo`` or
    ``cpu-demo.yaml``); else ``path`` unchanged (reading it then says it was not found)."""
    given = Path(path)
    if given.exists() or given.parent != Path("."):
        return given
    shipped = recipes_folder() / KINDS[kind] / f"{given.stem}.yaml"
    return shipped if given.suffix in ("", ".yaml") and shipped.exists() else given


def shipped_recipe(name: str, kind: str = "recipe") -> Path:
    """The file of a shipped recipe; an unknown name is an error listing the known ones."""
    if name not in recipe_names(kind):
        raise UserError(f"no shipped {kind} named {name!r}; known: {', '.join(recipe_names(kind))}")
    return recipes_folder() / KINDS[kind] / f"{name}.yaml"


def recipe_summary(name: str, kind: str = "recipe") -> str:
    """The first comment line of a shipped recipe: what it is for."""
    for line in shipped_recipe(name, kind).read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def copy_recipe(name: str, destination: str | Path, kind: str = "recipe") -> Path:
    """A copy of a shipped recipe to edit; refuses to overwrite a file."""
    text = shipped_recipe(name, kind).read_text(encoding="utf-8")
    destination = Path(destination)
    if destination.is_dir():
        destination = destination / f"{name}.yaml"
    if destination.exists():
        raise UserError(f"{destination}: already exists (choose another name, or delete it first)")
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text(text, encoding="utf-8")
    return destination
