"""The device store encrypted at rest (settings.runtime.store.encrypt): results round-trip,
the file holds no plaintext, tampering, a swapped row or another key is refused with one
line and nothing is deleted; a plaintext backlog is sealed in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeintel.cli import app
from edgeintel.errors import ConfigError, StoreCorrupt
from edgeintel.runtime.settings import StoreSettings
from edgeintel.runtime.store import DeviceStore
from edgeintel.security.store_crypto import (
    device_key,
    generate_store_secret,
    load_store_secret,
)

ENC = StoreSettings(encrypt=True, group_commit_ms=0)
MARK = "secret-label-7f3a"


@pytest.fixture
def secret(tmp_path: Path) -> bytes:
    path = generate_store_secret(tmp_path / "keys" / "store.key")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    return load_store_secret(path)


def _fill(path: Path, key: bytes | None, n: int = 3, settings: StoreSettings = ENC) -> None:
    with DeviceStore(path, settings, key=key) as s:
        for i in range(n):
            s.append(f"d:{i}", 0.25 * i, {"label": f"{MARK}-{i}", "p": [0.5, i]}, index=i)


def _raw(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_round_trip_and_no_plaintext_on_disk(tmp_path: Path, secret: bytes) -> None:
    path = tmp_path / "d.db"
    key = device_key(secret, "phone-0")
    _fill(path, key)
    assert MARK.encode() not in _raw(path) and b"0.25" not in _raw(path)
    with DeviceStore(path, ENC, key=key) as s:
        got = s.pending(10)
        assert [(r.key, r.t_s, r.payload) for r in got] == [
            (f"d:{i}", 0.25 * i, {"label": f"{MARK}-{i}", "p": [0.5, i]}) for i in range(3)
        ]
        assert s.next_index == 3
        s.ack([r.seq for r in got[:2]], 2)
        assert [r.key for r in s.pending(10)] == ["d:2"]


def test_tampered_or_swapped_record_is_refused_and_kept(tmp_path: Path, secret: bytes) -> None:
    path = tmp_path / "d.db"
    key = device_key(secret, "phone-0")
    _fill(path, key)
    db = sqlite3.connect(path)
    (sealed,) = db.execute("SELECT payload FROM pending WHERE key = 'd:1'").fetchone()
    flipped = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    db.execute("UPDATE pending SET payload = ? WHERE key = 'd:1'", (flipped,))
    db.commit()
    db.close()
    with DeviceStore(path, ENC, key=key) as s:
        with pytest.raises(StoreCorrupt, match=r"record 'd:1' fails authentication"):
            s.pending(10)
        assert s.size == 3  # nothing deleted
    # a valid ciphertext moved to another row is refused too (bound to its key)
    db = sqlite3.connect(path)
    (other,) = db.execute("SELECT payload FROM pending WHERE key = 'd:2'").fetchone()
    db.execute("UPDATE pending SET payload = ? WHERE key = 'd:0'", (other,))
    db.commit()
    db.close()
    with DeviceStore(path, ENC, key=key) as s, pytest.raises(StoreCorrupt, match="'d:0'"):
        s.pending(1)


def test_wrong_or_missing_key_is_one_line(tmp_path: Path, secret: bytes) -> None:
    path = tmp_path / "d.db"
    _fill(path, device_key(secret, "phone-0"))
    assert device_key(secret, "phone-1") != device_key(secret, "phone-0")
    with pytest.raises(StoreCorrupt, match="store key does not open this store"):
        DeviceStore(path, ENC, key=device_key(secret, "phone-1"))
    with pytest.raises(ConfigError, match=r"the store is encrypted; set settings\.runtime\.store"):
        DeviceStore(path, StoreSettings())
    with pytest.raises(ConfigError, match="encrypt is true but no store key"):
        DeviceStore(tmp_path / "e.db", ENC)
    bad = tmp_path / "short.key"
    bad.write_bytes(b"x" * 7)
    with pytest.raises(ConfigError, match=r"--store-key .*32-byte key file.*got 7 bytes"):
        load_store_secret(bad)


def test_plaintext_backlog_is_sealed_in_place(tmp_path: Path, secret: bytes) -> None:
    path = tmp_path / "d.db"
    _fill(path, None, settings=StoreSettings(group_commit_ms=0))
    assert MARK.encode() in _raw(path)
    key = device_key(secret, "phone-0")
    with DeviceStore(path, ENC, key=key) as s:
        assert [r.payload["label"] for r in s.pending(10)] == [f"{MARK}-{i}" for i in range(3)]
        assert [r.t_s for r in s.pending(10)] == [0.0, 0.25, 0.5]
    db = sqlite3.connect(path)
    db.execute("VACUUM")  # drop freed pages, which may still hold the old plaintext
    db.close()
    assert MARK.encode() not in _raw(path)


def test_device_cli_store_key_matches_the_scenario(
    tiny_scenario_file: Path, tmp_path: Path
) -> None:
    key = generate_store_secret(tmp_path / "store.key")
    args = ["device", str(tiny_scenario_file), "--device", "phone-0", "--onnx", "x.onnx"]
    r = CliRunner().invoke(app, [*args, "--store", str(tmp_path / "s.db"), "--store-key", str(key)])
    assert r.exit_code == 2, r.output
    assert "--store-key: the scenario's settings.runtime.store.encrypt is false" in r.output
    assert "Traceback" not in r.output
