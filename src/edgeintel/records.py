"""One loader for the files commands read back: run folders and the records in them.

``edgeintel compress --from-run``, ``simulate --from-run``, ``report``,
``export-repo``, ``device --filter-from`` and the planner's profile files read
JSON that an earlier run wrote, or that a user edited. Whatever is wrong with
such a file (not UTF-8, not JSON, a list where an object belongs, a missing key,
a value of the wrong type, a record naming a missing model) becomes one
``DataError`` line naming the file, the key and what is expected; nothing here
lets a ``KeyError`` or a ``TypeError`` escape as a traceback.

Paths inside a record (an artifact's ``path``) resolve against the record's own
folder when they are relative, so a record read from another working folder
names the same file.

Imports stay light: no torch, no onnxruntime.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from edgeintel.errors import DataError

__all__ = [
    "OPSET",
    "ModelArtifact",
    "Record",
    "RunFolder",
    "load_artifact",
    "open_run",
    "read_json",
    "read_json_list",
    "read_json_value",
    "read_text",
]

OPSET = 17
T = TypeVar("T")

# what a JSON value of each Python type is called in a message
_KIND = {dict: "an object", list: "a list", str: "a string", bool: "true/false",
         int: "an integer", float: "a number", type(None): "null"}  # fmt: skip


def _kind(value: Any) -> str:
    return _KIND.get(type(value), type(value).__name__)


def read_text(path: str | Path, what: str) -> str:
    """The UTF-8 text of ``path``; a missing file, a folder or bytes that are not UTF-8 are
    one ``DataError`` naming the file and ``what`` it should be."""
    p = Path(path)
    if p.is_dir():
        raise DataError(f"{p}: is a folder; expected {what}")
    if not p.is_file():
        raise DataError(f"{p}: file not found; expected {what}")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DataError(f"{p}: cannot be read ({exc.strerror}); expected {what}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{p}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            f"expected {what}"
        ) from None


def read_json_value(path: str | Path, what: str) -> Any:
    """The JSON value in ``path`` (any type); bad text or JSON is one ``DataError``."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            f"expected {what}"
        ) from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply; expected {what}") from None


def read_json(path: str | Path, what: str) -> Record:
    """The JSON object in ``path`` as a ``Record``; anything else is one ``DataError``."""
    data = read_json_value(path, what)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object ({what}), got {_kind(data)}")
    return Record(data, Path(path))


def read_json_list(path: str | Path, what: str) -> list[Record]:
    """The JSON list of objects in ``path``, each as a ``Record`` (``where`` = ``[i]``)."""
    data = read_json_value(path, what)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list ({what}), got {_kind(data)}")
    out = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise DataError(f"{path}: [{i}]: expected an object, got {_kind(item)} {item!r}"[:200])
        out.append(Record(item, Path(path), f"[{i}]"))
    return out


@dataclass(frozen=True)
class Record:
    """A JSON object read from ``source``; typed accessors name the file and key on error."""

    data: dict[str, Any]
    source: Path
    where: str = ""

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, expected: str, value: Any = None, got: bool = True) -> DataError:
        """The one-line error for ``key``: ``file: a.b.key: expected ..., got ...``."""
        tail = f", got {_kind(value)} {value!r}"[:120] if got else ""
        return DataError(f"{self.source}: {self._name(key)}: expected {expected}{tail}")

    def has(self, key: str) -> bool:
        return key in self.data

    def get(
        self, key: str, kind: type[T] | tuple[type, ...], expected: str, default: Any = ...
    ) -> T:
        """``data[key]`` checked to be of ``kind``; a missing key is an error unless a
        ``default`` is given (returned as is)."""
        if key not in self.data:
            if default is not ...:
                return default  # type: ignore[no-any-return]
            raise DataError(f"{self.source}: {self._name(key)}: required key is missing "
                            f"(expected {expected})")  # fmt: skip
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            raise self.fail(key, expected, value)
        return value  # type: ignore[no-any-return]

    def text(self, key: str, default: Any = ...) -> str:
        return self.get(key, str, "a string", default)

    def number(
        self, key: str, lo: float | None = None, hi: float | None = None, default: Any = ...
    ) -> float:
        """A finite number in [lo, hi]."""
        rng = "" if lo is None and hi is None else f" in [{lo}, {hi if hi is not None else 'inf'}]"
        value: Any = self.get(key, (int, float), f"a finite number{rng}", default)
        if value is default:
            return value
        if (
            not math.isfinite(value)
            or (lo is not None and value < lo)
            or (hi is not None and value > hi)
        ):
            raise self.fail(key, f"a finite number{rng}", value)
        return float(value)

    def integer(self, key: str, lo: int | None = None, default: Any = ...) -> int:
        rng = "" if lo is None else f" >= {lo}"
        value = self.get(key, int, f"an integer{rng}", default)
        if value is not default and lo is not None and value < lo:
            raise self.fail(key, f"an integer{rng}", value)
        return value

    def strings(self, key: str, default: Any = ...) -> list[str]:
        value = self.get(key, list, "a list of strings", default)
        if value is not default and not all(isinstance(v, str) for v in value):
            raise self.fail(key, "a list of strings", value)
        return value

    def sub(self, key: str, default: Any = ...) -> Record:
        """The nested object at ``key`` as a ``Record`` (its errors name ``where.key``)."""
        value = self.get(key, dict, "an object", default)
        if value is default:
            return value  # type: ignore[no-any-return]
        return Record(value, self.source, self._name(key))

    def subs(self, key: str) -> dict[str, Record]:
        """An object of objects (e.g. ``per_device``): name -> ``Record``."""
        rec = self.sub(key)
        out = {}
        for name, value in rec.data.items():
            if not isinstance(value, dict):
                raise rec.fail(name, "an object", value)
            out[name] = Record(value, self.source, rec._name(name))
        return out


# --------------------------------------------------------------------------- model artifacts


@dataclass
class ModelArtifact:
    """An ONNX file and what a consumer needs to run it (shape excludes the batch axis)."""

    path: str
    input_name: str
    input_shape: list[int]
    output_name: str
    labels: list[str]
    sha256: str
    bytes: int
    opset: int = OPSET
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path | None = None) -> Path:
        """Write the record next to the model as ``<model>.json`` (or to ``path``)."""
        out = Path(path) if path else Path(self.path).with_suffix(".json")
        out.write_text(json.dumps(self.to_json(), indent=2))
        return out

    @classmethod
    def load(cls, path: str | Path) -> ModelArtifact:
        """A validated record (see ``load_artifact``)."""
        return load_artifact(path)


def load_artifact(path: str | Path, model: str | Path | None = None) -> ModelArtifact:
    """Read and check an artifact record (``<model>.json``).

    Every field is checked for its type; the model's ``path``, when relative, is
    resolved against the record's folder (a record written in another working
    folder names a file beside it), and must be an existing file. ``model``
    overrides the recorded path (a run folder's own ``model.onnx``, wherever the
    folder has moved).
    """
    what = "a model artifact record (<model>.json written beside its .onnx)"
    rec = read_json(path, what)
    shape = rec.get("input_shape", list, "a list of integers")
    if not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise rec.fail("input_shape", "a list of integers", shape)
    recorded = Path(rec.text("path"))
    model = recorded if model is None else Path(model)
    if not model.is_absolute():
        # relative to the record's folder; a record written as <runs>/<id>/model.onnx
        # (relative to the exporting working folder) names the file beside it
        here = Path(path).parent
        found = [p for p in (here / model, here / model.name, model) if p.exists()]
        model = found[0] if found else here / model
    if model.is_dir():
        raise rec.fail("path", f"an ONNX file, not the folder {model}", got=False) from None
    if not model.is_file():
        raise DataError(f"{path}: path: the model file {model} does not exist")
    sha = rec.text("sha256")
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise rec.fail("sha256", "64 lower-case hex digits", sha)
    return ModelArtifact(
        path=str(model),
        input_name=rec.text("input_name"),
        input_shape=list(shape),
        output_name=rec.text("output_name"),
        labels=rec.strings("labels"),
        sha256=sha,
        bytes=rec.integer("bytes", 0),
        opset=rec.integer("opset", 1, default=OPSET),
        extra=rec.get("extra", dict, "an object", default={}),
    )


# --------------------------------------------------------------------------- run folders


@dataclass(frozen=True)
class RunFolder:
    """A run folder (``runs/<id>``) whose files are read through checked accessors."""

    path: Path
    option: str = "run folder"

    def file(self, name: str, made_by: str = "`edgeintel run`") -> Path:
        p = self.path / name
        if not p.is_file():
            raise DataError(
                f"{self.option} {self.path}: no {name}; expected a run folder written by {made_by}"
            )
        return p

    def results(self) -> Record:
        """``results.json``: an object with a ``run_id``; run fields of their types, and
        every other top-level key (a section) an object."""
        rec = read_json(self.file("results.json"), "the results.json of a run")
        check_results(rec)
        return rec

    def scenario(self) -> Record:
        """``scenario.json``: the scenario the run was made from (an object)."""
        return read_json(self.file("scenario.json"), "the scenario.json of a run")

    def model(self) -> ModelArtifact:
        """``model.json`` with ``model.onnx``: the run's exported model."""
        onnx = self.file("model.onnx", "`edgeintel run` or `edgeintel train`")
        return load_artifact(self.file("model.json", "`edgeintel run` or `edgeintel train`"), onnx)


# run fields of results.json and their types; every other top-level key is a section
_RUN_FIELDS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "run_id": (str, "a string"),
    "created": (str, "a string"),
    "status": (str, "a string"),
    "error": ((str, type(None)), "a string or null"),
    "title": (str, "a string"),
    "subtitle": (str, "a string"),
    "scenario": (dict, "an object"),
    "machine": (dict, "an object"),
    "versions": (dict, "an object"),
    "stage_status": (dict, "an object"),
    "stages": (list, "a list of stage names"),
    "timings_s": (dict, "an object of seconds per stage"),
}


def check_results(rec: Record) -> None:
    """Check the top level of a ``results.json``: the run fields' types, sections objects."""
    rec.text("run_id")
    for key in rec.data:
        if key in _RUN_FIELDS:
            kind, expected = _RUN_FIELDS[key]
            rec.get(key, kind, expected)
        elif rec.data[key] is not None:
            rec.get(key, dict, "an object (a results section)")
    rec.strings("stages", default=None)
    timings = rec.sub("timings_s", default=None)
    for stage in timings.data if timings is not None else ():
        timings.number(stage, 0)


def open_run(path: str | Path, option: str = "run folder") -> RunFolder:
    """A run folder given on the command line (``option`` names it in errors)."""
    p = Path(path)
    if not p.is_dir():
        what = "a file" if p.exists() else "not found"
        raise DataError(f"{option} {p}: {what}; expected a run folder (runs/<run-id>)")
    return RunFolder(p, option)
