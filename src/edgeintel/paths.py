"""Safe output paths: user-given names that become file names, and folders they go in.

A device profile name, a ``--device``, a ``--run-id`` ends up as a file or
folder name. ``safe_name`` accepts only a plain name (letters, digits, ``_``,
``.``, ``-``; no path separator, no leading dot, no ``..``), and ``inside``
joins a name to a folder and checks that the result stays in that folder even
after symbolic links are resolved, so no input can write outside its output
folder.
"""

from __future__ import annotations

import re
from pathlib import Path

from edgeintel.errors import ConfigError

__all__ = ["NAME_PATTERN", "check_out_dir", "inside", "safe_name"]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)


def safe_name(value: str, what: str) -> str:
    """Return ``value`` if it is a plain file name; else raise a ``ConfigError`` naming ``what``.

    A plain name has 1-64 characters among letters, digits, ``_``, ``.`` and ``-``,
    starts with a letter or digit and contains no ``..``.
    """
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        raise ConfigError(
            f"{what}: {value!r} is not a plain name; use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit (no '/', no '..')"
        )
    return value


def inside(folder: str | Path, name: str, suffix: str = "", what: str = "output name") -> Path:
    """``folder / (name + suffix)`` after checking ``name`` is plain and the path stays inside.

    Symbolic links are resolved before the check, so a link planted in ``folder``
    cannot redirect the write either.
    """
    safe_name(name, what)
    base = Path(folder).resolve()
    path = (base / f"{name}{suffix}").resolve()
    if path.parent != base:
        raise ConfigError(f"{what}: {name!r} would write outside {folder}")
    return Path(folder) / f"{name}{suffix}"


def check_out_dir(path: str | Path, what: str = "--out") -> Path:
    """An output folder: refuse an existing file or an empty name; return it as a Path."""
    p = Path(path)
    if str(path).strip() == "":
        raise ConfigError(f"{what}: give a folder name")
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{what}: {p} exists and is not a folder")
    for parent in p.parents:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"{what}: {parent} is a file, not a folder")
    return p
