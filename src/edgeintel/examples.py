"""The scenarios shipped inside the package (``edgeintel examples``) and ``--set`` overrides.

The shipped scenario files live in ``edgeintel/scenarios/`` (package data), so
``edgeintel run default`` works from any folder after ``pip install edgeintel``.
``--set key.path=value`` changes any field of a scenario before it is
validated, so an override is checked exactly like the file.
"""

from __future__ import annotations

import shutil
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import yaml

from edgeintel.errors import ConfigError

__all__ = [
    "apply_overrides",
    "copy_example",
    "example_path",
    "list_examples",
    "load_scenario_with",
    "resolve_scenario",
]


def _examples_dir() -> Path:
    with as_file(files("edgeintel") / "scenarios") as p:
        return Path(p)


def list_examples() -> dict[str, dict[str, Any]]:
    """Shipped scenarios by file stem: path, scenario name and description."""
    out: dict[str, dict[str, Any]] = {}
    d = _examples_dir()
    for f in sorted(d.glob("*.yaml")) if d.is_dir() else []:
        try:
            raw = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            raw = {}
        out[f.stem] = {
            "path": f,
            "name": raw.get("name", f.stem),
            "description": " ".join(str(raw.get("description", "")).split()),
        }
    return out


def example_path(name: str) -> Path:
    """Path of the shipped scenario ``name`` (``default`` or ``default.yaml``)."""
    stem = Path(name).stem if name.endswith((".yaml", ".yml")) else name
    path = _examples_dir() / f"{stem}.yaml"
    if "/" in stem or "\\" in stem or not path.is_file():  # parse the catalogue only to list it
        known = ", ".join(list_examples()) or "none"
        raise ConfigError(f"unknown example scenario {name!r}; expected one of: {known}")
    return path


def copy_example(name: str, dest: str | Path = ".", overwrite: bool = False) -> Path:
    """Copy the shipped scenario ``name`` into folder ``dest`` (or to file ``dest``.yaml)."""
    src = example_path(name)
    d = Path(dest)
    target = d if d.suffix in (".yaml", ".yml") else d / src.name
    if target.exists() and not overwrite:
        raise ConfigError(f"{target}: already exists; pass --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, target)
    return target


def resolve_scenario(arg: str | Path) -> Path:
    """The scenario file for a command-line argument.

    An existing path wins; otherwise a bare name (``default``) or a path under
    ``scenarios/`` that does not exist here names a shipped scenario.
    """
    p = Path(arg)
    if p.exists():
        return p
    bare = p.parent in (Path("."), Path("scenarios")) and p.suffix in ("", ".yaml", ".yml")
    if bare and p.stem in list_examples():
        return example_path(p.stem)
    if p.suffix == "":
        known = ", ".join(list_examples())
        raise ConfigError(
            f"scenario file not found: {p}; give a YAML file or a shipped scenario ({known})"
        )
    return p


def _parse_value(text: str) -> Any:
    from edgeintel.schema import load_yaml

    try:
        return load_yaml(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` assignments to a raw scenario mapping (a changed copy).

    Keys are dotted field paths; list items are addressed by index
    (``devices.0.count=50``); values are read as YAML (``5``, ``0.1``, ``true``,
    ``[a, b]``, ``{bandwidth_mbps: 5}``). Missing mappings on the path are
    created so validation can name an unknown field.
    """
    import copy

    out = copy.deepcopy(raw)
    for item in assignments:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item!r}: expected key.path=value, e.g. seed=3")
        node: Any = out
        parts = key.split(".")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            where = ".".join(parts[: i + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(
                        f"--set {key}: {where!r} must be a list index below {len(node)}"
                    )
                idx = int(part)
                if last:
                    node[idx] = _parse_value(value)
                else:
                    node = node[idx]
            elif isinstance(node, dict):
                if last:
                    node[part] = _parse_value(value)
                else:
                    if node.get(part) is None:
                        node[part] = {}
                    node = node[part]
            else:
                raise ConfigError(
                    f"--set {key}: {'.'.join(parts[:i])!r} is a value, not a mapping or list"
                )
    return out


def load_scenario_with(path: str | Path, assignments: list[str] | None = None) -> Any:
    """Load a scenario file with ``--set`` assignments applied before validation."""
    from edgeintel.scenario import load_scenario, parse_scenario

    p = Path(path)
    if not assignments:
        return load_scenario(p)
    if not p.is_file():
        raise ConfigError(f"scenario file not found: {p}")
    from edgeintel.schema import load_yaml

    try:
        raw = load_yaml(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return load_scenario(p)  # reports the YAML problem as one line
    if not isinstance(raw, dict):
        return load_scenario(p)
    return parse_scenario(
        apply_overrides(raw, assignments), base_dir=p.parent, source=f"{p} with --set"
    )
