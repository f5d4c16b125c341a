"""A device's model versions: over-the-air updates, verified before they run, kept on disk.

``ModelUpdater`` fetches the version a server assigns (``GET
/v1/models/{name}/versions/{v}/artifact``) into ``folder/<version>/model.onnx``, checks
it before ONNX Runtime opens it (the signature with ``verify``, the device's
``ArtifactVerifier``; without one, the sha256 the server sent), checks its input shape,
and records the version in ``folder/CURRENT`` once the agent runs it, so an agent that
restarts resumes with the version it last ran. A refused version is remembered with the
reason (reported to the server, which rolls the version back) and not fetched again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.errors import ModelError
from edgeintel.runtime.transport import Request, Transport, TransportError

__all__ = ["ActiveModel", "ModelUpdater"]

MODEL_FILE = "model.onnx"


@dataclass(frozen=True)
class ActiveModel:
    """The ONNX Runtime session a device runs, its input name and version; ``predictor``,
    where set, runs the same version in the device profile's runtime (a loaded artifact of
    ``edgeintel.inference.runtimes``: an OpenVINO IR, an ExecuTorch program) instead."""

    session: Any
    version: str
    predictor: Any = None

    @property
    def input_name(self) -> str:
        return str(self.session.get_inputs()[0].name)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The model's first output for ``batch`` (N, ...), in the device's runtime."""
        if self.predictor is not None:
            return np.asarray(self.predictor.run(batch))
        return np.asarray(self.session.run(None, {self.input_name: batch})[0])


class ModelUpdater:
    """Versions of one model on one device, under ``folder``.

    ``transport`` / ``headers`` reach the server; ``verify(path)`` raises ``ModelError``
    for a file without a valid signature (None: the server's sha256 is checked instead);
    ``open_session(path)`` makes the session (the agent's runtime) and ``check(session)``
    refuses one that does not fit the device's inputs (``ModelError``)."""

    def __init__(
        self,
        model: str,
        folder: str | Path,
        transport: Transport | None,
        headers: dict[str, str] | None = None,
        verify: Callable[[Path], None] | None = None,
        open_session: Callable[[Path], Any] | None = None,
        check: Callable[[Any], None] | None = None,
    ) -> None:
        self.model = model
        self.folder = Path(folder)
        self.transport = transport
        self.headers = dict(headers or {})
        self.verify = verify
        self._open = open_session or _ort_session
        self._check = check
        self.refused: dict[str, str] = {}

    def path(self, version: str) -> Path:
        return self.folder / version / MODEL_FILE

    def current(self) -> str | None:
        """The version the agent last ran (None: never updated)."""
        try:
            v = (self.folder / "CURRENT").read_text().strip()
        except OSError:
            return None
        return v if v.isdigit() and self.path(v).is_file() else None

    def commit(self, version: str) -> None:
        """Record ``version`` as the one running (atomically: a crash leaves one or the other)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / "CURRENT.tmp"
        tmp.write_text(version + "\n")
        os.replace(tmp, self.folder / "CURRENT")

    def open(self, version: str) -> ActiveModel:
        """A stored version, verified again before it runs (a file changed on disk since
        it was fetched is refused)."""
        f = self.path(version)
        if self.verify is not None:
            self.verify(f)
        session = self._open(f)
        if self._check is not None:
            self._check(session)
        return ActiveModel(session, version)

    def fetch(self, version: str) -> ActiveModel:
        """Download, verify and open ``version``; ``ModelError`` naming why it is refused
        (remembered in ``refused``), ``TransportError`` when the server cannot be reached
        (tried again later)."""
        if version in self.refused:
            raise ModelError(self.refused[version])
        if not version.isdigit():
            return self._refuse(version, f"version {version!r} is not a version number")
        if self.transport is None:
            raise TransportError("no server to fetch from")
        resp = self.transport.send(
            Request(
                "GET",
                f"/v1/models/{self.model}/versions/{version}/artifact",
                headers=self.headers,
                timeout_s=30.0,
            )
        )
        if resp.status != 200:
            raise TransportError(f"artifact of version {version}: server answered {resp.status}")
        headers = {k.lower(): v for k, v in resp.headers.items()}
        vdir = self.folder / version
        vdir.mkdir(parents=True, exist_ok=True)
        f = vdir / MODEL_FILE
        tmp = vdir / (MODEL_FILE + ".part")
        tmp.write_bytes(resp.body)
        os.replace(tmp, f)
        sig = f.with_name(f.name + ".sig")
        if "x-edgeintel-signature" in headers:
            sig.write_text(headers["x-edgeintel-signature"] + "\n")
        else:
            sig.unlink(missing_ok=True)
        try:
            if self.verify is None:
                digest = hashlib.sha256(resp.body).hexdigest()
                if digest != headers.get("x-edgeintel-sha256"):
                    raise ModelError(f"{f}: sha256 {digest[:12]}... differs from the server's")
            return self.open(version)
        except ModelError as exc:
            return self._refuse(version, str(exc))

    def _refuse(self, version: str, reason: str) -> ActiveModel:
        self.refused[version] = reason
        raise ModelError(reason)


def _ort_session(path: Path) -> Any:
    from edgeintel.onnx_files import make_session

    return make_session(path)
