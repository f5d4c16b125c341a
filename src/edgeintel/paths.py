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
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgeintel.errors import ConfigError

__all__ = [
    "NAME_PATTERN",
    "check_new_out_dir",
    "check_out_dir",
    "check_run_dir",
    "inside",
    "removed_on_failure",
    "safe_name",
]

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


def check_new_out_dir(path: str | Path, what: str = "--out", overwrite: bool = False) -> Path:
    """An output folder that holds nothing earlier: like ``check_out_dir``, and a folder
    with files in it (an earlier run, report or repository) is refused unless
    ``overwrite``, so no command silently replaces earlier results."""
    p = check_out_dir(path, what)
    if p.is_symlink():
        raise ConfigError(f"{what}: {p} is a symbolic link; give a plain folder")
    if p.is_dir() and any(p.iterdir()) and not overwrite:
        held = "an earlier run" if (p / "results.json").is_file() else "earlier files"
        raise ConfigError(
            f"{what}: {p} already holds {held}; choose another folder or pass --overwrite "
            "to replace them"
        )
    return p


@contextmanager
def removed_on_failure(folder: str | Path) -> Iterator[Path]:
    """Create ``folder`` (with its missing parents) for a command's outputs; if the block
    fails, remove what this call created, so a refused or failed command leaves nothing
    behind. A folder that existed before is left in place."""
    p = Path(folder)
    created = [q for q in (p, *p.parents) if not q.exists()]
    p.mkdir(parents=True, exist_ok=True)
    try:
        yield p
    except BaseException:
        if created:
            shutil.rmtree(created[-1], ignore_errors=True)
        raise


def check_run_dir(runs_dir: str | Path, run_id: str | None, overwrite: bool = False) -> None:
    """Refuse, before any work, a run folder that cannot be used: ``runs_dir`` a file, a
    ``run_id`` that is not a plain name, or one that holds an earlier run (unless
    ``overwrite``)."""
    base = check_out_dir(runs_dir, "--runs-dir")
    if run_id is None:
        return
    run_dir = inside(base, safe_name(run_id, "--run-id"), what="--run-id")
    if run_dir.is_symlink() or (run_dir.exists() and not run_dir.is_dir()):
        raise ConfigError(f"--run-id {run_id!r}: {run_dir} exists and is not a folder")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not overwrite:
        raise ConfigError(
            f"--run-id {run_id!r}: {run_dir} already holds an earlier run; choose "
            "another --run-id or pass --overwrite to replace it"
        )
