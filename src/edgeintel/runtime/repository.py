"""Model repository in Triton's layout, sha256-verified, and its export from our artifacts.

Layout (the same directory serves on our server, Triton and KServe)::

    <root>/<model>/config.pbtxt        Triton config (platform onnxruntime_onnx, batching)
    <root>/<model>/edgeintel.json      manifest: sha256 and bytes of every version's file
    <root>/<model>/<version>/model.onnx

A version is served only when its file's sha256 equals the manifest's; a
tampered or unrecorded file is refused (listed in ``refused`` with the reason). With
``verify`` (``security.ArtifactVerifier``) the file must also carry a valid Ed25519
signature (``model.onnx.sig`` beside it), which a rewritten manifest cannot forge.
Split-model tails (from the offloading planner) are ordinary models here,
named by the planner (e.g. ``digits_tail_3``); a device posts its head's
output tensor to them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeintel.errors import ModelError
from edgeintel.onnx_files import file_sha256, make_session
from edgeintel.security.signing import sign_file, signature_path

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edgeintel.models.export import ModelArtifact
    from edgeintel.tasks import TaskKind

__all__ = [
    "MANIFEST",
    "LoadedModel",
    "ModelRepository",
    "TensorSpec",
    "add_model",
    "export_repository",
    "model_task",
    "pbtxt_string",
    "triton_config",
]

MANIFEST = "edgeintel.json"
MODEL_FILE = "model.onnx"

_ORT_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}
_TRITON_TYPES = {k: "TYPE_" + ("STRING" if k == "BYTES" else k) for k in _ORT_TYPES.values()}


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: name, protocol datatype, shape (-1 = any, incl. batch axis)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass
class LoadedModel:
    """One verified, loaded model version and its ONNX Runtime session."""

    name: str
    version: str
    path: Path
    sha256: str
    session: Any
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    labels: list[str] = field(default_factory=list)

    @property
    def batchable(self) -> bool:
        """True when every input and output has a free leading (batch) axis."""
        return all(t.shape and t.shape[0] == -1 for t in self.inputs + self.outputs)

    def metadata(self, versions: list[str]) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": versions,
            "platform": "onnxruntime_onnx",
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
        }


def _specs(args: list[Any]) -> list[TensorSpec]:
    out = []
    for a in args:
        dt = _ORT_TYPES.get(a.type)
        if dt is None:
            raise ModelError(f"tensor {a.name!r} has type {a.type}, not served by this protocol")
        shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in a.shape)
        out.append(TensorSpec(a.name, dt, shape))
    return out


class ModelRepository:
    """Models found under ``root``; each version verified against the manifest (and by
    ``verify(path)`` when given: the seam for signed artifacts), then loaded."""

    def __init__(
        self,
        root: str | Path,
        intra_op_threads: int = 1,
        verify: Callable[[Path], None] | None = None,
    ) -> None:
        self.root = Path(root)
        self.verify = verify  # a further check of each file (signature), ModelError to refuse
        self.unloaded: set[str] = set()
        if not self.root.is_dir():
            raise ModelError(f"model repository not found: {self.root}")
        self.intra_op_threads = intra_op_threads
        self.models: dict[str, dict[str, LoadedModel]] = {}
        self.refused: dict[str, str] = {}
        self.pinned: dict[str, str] = {}  # model -> its default version (else the highest)
        self.load()

    def load(self) -> None:
        """(Re)scan the repository: verify each version's sha256 before creating a session."""
        models: dict[str, dict[str, LoadedModel]] = {}
        refused: dict[str, str] = {}
        for mdir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            versions = self._load_dir(mdir, refused)
            if versions:
                models[mdir.name] = versions
        self.models, self.refused = models, refused
        self.unloaded.clear()

    def load_model(self, name: str) -> bool:
        """(Re)load one model folder (the repository extension's ``load``); False when no
        version of it could be served (the reasons are in ``refused``)."""
        mdir = self.root / name
        self.refused = {
            k: v for k, v in self.refused.items() if k != name and not k.startswith(f"{name}/")
        }
        self.unloaded.discard(name)
        if "/" in name or name in ("", ".", "..") or not mdir.is_dir():
            self.models.pop(name, None)
            return False
        versions = self._load_dir(mdir, self.refused)
        if versions:
            self.models[name] = versions
        else:
            self.models.pop(name, None)
        return bool(versions)

    def unload_model(self, name: str) -> None:
        """Stop serving a model (its folder stays; ``load_model`` serves it again)."""
        if self.models.pop(name, None) is not None:
            self.unloaded.add(name)

    def index(self, ready_only: bool = False) -> list[dict[str, str]]:
        """Triton's repository index: name, version, state (READY / UNAVAILABLE), reason."""
        out: list[dict[str, str]] = []
        names = {p.name for p in self.root.iterdir() if p.is_dir()} | set(self.models)
        for name in sorted(names):
            served = self.models.get(name, {})
            for v in self.versions(name):
                out.append({"name": name, "version": v, "state": "READY", "reason": ""})
            if ready_only:
                continue
            for key, why in sorted(self.refused.items()):
                if key == name or key.startswith(f"{name}/"):
                    version = key.partition("/")[2]
                    if version not in served:
                        out.append(
                            {
                                "name": name,
                                "version": version,
                                "state": "UNAVAILABLE",
                                "reason": why,
                            }
                        )
            if name in self.unloaded:
                out.append(
                    {"name": name, "version": "", "state": "UNAVAILABLE", "reason": "unloaded"}
                )
        return out

    def _load_dir(self, mdir: Path, refused: dict[str, str]) -> dict[str, LoadedModel]:
        """The servable versions of one model folder; refusals recorded in ``refused``."""
        manifest_path = mdir / MANIFEST
        if not manifest_path.is_file():
            refused[mdir.name] = f"{manifest_path}: missing manifest (sha256 of each version)"
            return {}
        try:
            manifest = json.loads(manifest_path.read_text())
            recorded: dict[str, Any] = manifest["versions"]
        except (ValueError, KeyError, TypeError):
            refused[mdir.name] = f"{manifest_path}: not a manifest with a 'versions' mapping"
            return {}
        versions: dict[str, LoadedModel] = {}
        for vdir in sorted((p for p in mdir.iterdir() if p.is_dir()), key=lambda p: p.name):
            key = f"{mdir.name}/{vdir.name}"
            if not vdir.name.isdigit():
                continue
            f = vdir / MODEL_FILE
            if not f.is_file():
                refused[key] = f"{f}: missing"
                continue
            entry = recorded.get(vdir.name)
            if not isinstance(entry, dict) or "sha256" not in entry:
                refused[key] = f"{f}: no sha256 recorded in {MANIFEST}; refused"
                continue
            digest = file_sha256(f)
            if digest != entry["sha256"]:
                refused[key] = (
                    f"{f}: sha256 {digest[:12]}... does not match the recorded "
                    f"{str(entry['sha256'])[:12]}...; refused (tampered or corrupted)"
                )
                continue
            try:
                if self.verify is not None:
                    self.verify(f)
                session = make_session(f, self.intra_op_threads)
                versions[vdir.name] = LoadedModel(
                    name=mdir.name,
                    version=vdir.name,
                    path=f,
                    sha256=digest,
                    session=session,
                    inputs=_specs(session.get_inputs()),
                    outputs=_specs(session.get_outputs()),
                    labels=list(manifest.get("labels") or []),
                )
            except ModelError as exc:
                refused[key] = str(exc)
        return versions

    def versions(self, name: str) -> list[str]:
        return sorted(self.models.get(name, {}), key=int)

    def pin(self, name: str, version: str) -> None:
        """Make ``version`` what an unversioned request for ``name`` gets (a rollout's
        stable version while a newer one is only on the canary)."""
        self.pinned[name] = version

    def default_version(self, name: str) -> str:
        """The version an unversioned request gets: the pinned one when served, else the
        highest; ``KeyError`` for a model not served."""
        versions = self.models.get(name)
        if not versions:
            raise KeyError(f"unknown model {name!r}")
        pinned = self.pinned.get(name)
        return pinned if pinned in versions else max(versions, key=int)

    def get(self, name: str, version: str | None = None) -> LoadedModel:
        """The named version, or the highest one; ``KeyError`` with a readable message."""
        versions = self.models.get(name)
        if not versions:
            why = self.refused.get(name)
            raise KeyError(f"unknown model {name!r}" + (f" ({why})" if why else ""))
        if version is None or version == "":
            return versions[self.default_version(name)]
        if version not in versions:
            why = self.refused.get(f"{name}/{version}")
            raise KeyError(
                f"model {name!r} has no version {version!r}"
                + (f" ({why})" if why else f"; available: {', '.join(self.versions(name))}")
            )
        return versions[version]


def pbtxt_string(value: str) -> str:
    """``value`` as a quoted protobuf text-format string: quotes, backslashes, control
    characters and non-ASCII bytes escaped, so any tensor or model name gives a valid file."""
    out = []
    for b in value.encode("utf-8"):
        c = chr(b)
        if c in ('"', "\\", "'"):
            out.append("\\" + c)
        elif 0x20 <= b < 0x7F:
            out.append(c)
        else:
            out.append(f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def triton_config(
    name: str,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    max_batch_size: int = 32,
    max_queue_delay_us: int = 2000,
) -> str:
    """A Triton ``config.pbtxt`` for an ONNX model with a leading batch axis (every name
    escaped as a protobuf text-format string)."""

    def block(kind: str, specs: list[TensorSpec]) -> str:
        items = []
        for t in specs:
            dims = t.shape[1:] if max_batch_size > 0 else t.shape
            items.append(
                f"  {{ name: {pbtxt_string(t.name)} data_type: {_TRITON_TYPES[t.datatype]} "
                f"dims: [ {', '.join(str(d) for d in dims)} ] }}"
            )
        return f"{kind} [\n" + ",\n".join(items) + "\n]\n"

    text = (
        f'name: {pbtxt_string(name)}\nplatform: "onnxruntime_onnx"\n'
        f"max_batch_size: {max_batch_size}\n" + block("input", inputs) + block("output", outputs)
    )
    if max_batch_size > 1:
        text += f"dynamic_batching {{ max_queue_delay_microseconds: {max_queue_delay_us} }}\n"
    return text


def model_task(root: str | Path, name: str) -> TaskKind | None:
    """The task kind (with its fitted options) recorded in model ``name``'s manifest under
    ``root`` (``add_model(task=...)``); None when the manifest records none (a model
    packaged without one is served as a classifier). A bad record is one line naming it."""
    from edgeintel.tasks import TASKS, make_task

    path = Path(root) / name / MANIFEST
    try:
        record = json.loads(path.read_text()).get("task")
    except (OSError, ValueError, AttributeError):
        return None
    if record is None:
        return None
    kind = record.get("kind") if isinstance(record, dict) else None
    if not isinstance(kind, str) or kind not in TASKS:
        raise ModelError(f"{path}: task: expected a registered task kind, got {record!r}")
    try:
        return make_task(kind, **{k: v for k, v in record.items() if k != "kind"})
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{path}: task: {exc}") from None


def add_model(
    root: str | Path,
    name: str,
    onnx_path: str | Path,
    version: int = 1,
    labels: list[str] | None = None,
    max_batch_size: int = 32,
    signer: Ed25519PrivateKey | None = None,
    task: dict[str, Any] | None = None,
) -> Path:
    """Copy an ONNX file into ``root/name/version/model.onnx`` and record it in the manifest
    and ``config.pbtxt``; returns the model folder. The file's detached signature
    (``model.onnx.sig``) is copied along when the source has one, and written anew with
    ``signer`` (an Ed25519 key) when given. ``task`` (the artifact's ``extra.task``: the
    task kind and its fitted options) tells servers what the outputs mean."""
    src = Path(onnx_path)
    if not src.is_file():
        raise ModelError(f"model file not found: {src}")
    if version < 1:
        raise ModelError(f"model version must be >= 1, got {version}")
    mdir = Path(root) / name
    vdir = mdir / str(version)
    vdir.mkdir(parents=True, exist_ok=True)
    dst = vdir / MODEL_FILE
    shutil.copyfile(src, dst)
    src_sig, dst_sig = signature_path(src), signature_path(dst)
    if signer is not None:
        sign_file(dst, signer)
    elif src_sig.is_file():
        shutil.copyfile(src_sig, dst_sig)
    else:
        dst_sig.unlink(missing_ok=True)  # an older version's signature never covers this file
    manifest_path = mdir / MANIFEST
    manifest: dict[str, Any] = (
        json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    )
    manifest.setdefault("name", name)
    manifest.setdefault("versions", {})
    manifest["versions"][str(version)] = {"sha256": file_sha256(dst), "bytes": dst.stat().st_size}
    if labels is not None:
        manifest["labels"] = list(labels)
    if task is not None:
        manifest["task"] = dict(task)
    manifest["max_batch_size"] = max_batch_size
    manifest_path.write_text(json.dumps(manifest, indent=2))
    session = make_session(dst)
    ins, outs = _specs(session.get_inputs()), _specs(session.get_outputs())
    batch = max_batch_size if all(t.shape and t.shape[0] == -1 for t in ins + outs) else 0
    (mdir / "config.pbtxt").write_text(triton_config(name, ins, outs, batch))
    return mdir


def export_repository(
    artifacts: dict[str, ModelArtifact | list[ModelArtifact]],
    root: str | Path,
    max_batch_size: int = 32,
    overwrite: bool = False,
    signer: Ed25519PrivateKey | None = None,
) -> Path:
    """Write our ONNX artifacts as a Triton/KServe model repository at ``root``.

    ``artifacts`` maps a model name (a plain name: it becomes a folder) to one
    artifact (version 1) or a list (versions 1, 2, ...). Everything is checked
    before the first write: names, each artifact's recorded sha256 (a file
    changed since export is not packaged) and ``root`` itself, which must not be
    a file nor hold models unless ``overwrite``. A failed export removes what it
    wrote, so no half or empty repository is left behind. Signatures beside the artifacts
    are kept beside the repository's files; ``signer`` signs every file anew.
    """
    import tempfile

    from edgeintel.paths import check_out_dir, safe_name

    root = check_out_dir(root, "--out")
    for name, arts in artifacts.items():
        safe_name(name, "--name")
        for art in arts if isinstance(arts, list) else [arts]:
            src = Path(art.path)
            if not src.is_file():
                raise ModelError(f"{src}: model file not found (named by its artifact record)")
            if file_sha256(src) != art.sha256:
                raise ModelError(f"{art.path}: sha256 differs from its artifact record; refused")
            make_session(src)  # not a loadable ONNX model -> one line naming this file
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        raise ModelError(
            f"--out {root}: already holds files (an earlier repository?); choose another "
            "folder or pass --overwrite to replace the models of the same names"
        )
    # build in a fresh folder beside root, then move the model folders in: a failure
    # (a model that ONNX Runtime refuses) leaves root as it was
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-export-", dir=root.parent))
    try:
        for name, arts in artifacts.items():
            for v, art in enumerate(arts if isinstance(arts, list) else [arts], start=1):
                add_model(staging, name, art.path, v, labels=art.labels,
                          max_batch_size=max_batch_size, signer=signer,
                          task=(art.extra or {}).get("task"))  # fmt: skip
        root.mkdir(exist_ok=True)
        for name in artifacts:
            dst = root / name
            if dst.exists():
                shutil.rmtree(dst)
            (staging / name).rename(dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root
