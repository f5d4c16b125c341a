"""The server's durable record of results forwarded by devices (exactly once per key).

Each device sends its results with an idempotency key (``<device>:<stream
index>``); the primary key ``(device, key)`` makes a replayed result a counted
duplicate, not a second row. A batch is acknowledged only after its commit.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["ResultSink", "check_results"]

_INT64 = (-(2**63), 2**63 - 1)


def check_results(msg: Any, device: str | None) -> tuple[str, list[dict[str, Any]]]:
    """(device, records) of a ``/v1/results`` body ``{"device": str, "records": [...]}``;
    ``ValueError`` naming what is wrong: each record needs ``key`` (str), ``seq`` (an
    integer that fits SQLite's 64 bits) and ``t_s`` (a finite number); ``urgent`` (bool,
    optional) marks an alarm, forwarded upstream ahead of the backlog. ``device``: the
    authenticated caller, who may only submit its own results (``PermissionError``)."""
    if not isinstance(msg, dict) or not isinstance(msg.get("device"), str):
        raise ValueError("expected {'device': str, 'records': [...]}")
    if device is not None and msg["device"] != device:
        raise PermissionError(
            f"the caller is {device!r} and may submit only its own results, not {msg['device']!r}'s"
        )
    records = msg.get("records")
    if not isinstance(records, list):
        raise ValueError("records must be a list")
    for i, r in enumerate(records):
        if not (
            isinstance(r, dict)
            and isinstance(r.get("key"), str)
            and isinstance(r.get("seq"), int)
            and not isinstance(r.get("seq"), bool)
            and isinstance(r.get("t_s"), int | float)
            and not isinstance(r.get("t_s"), bool)
        ):
            raise ValueError(
                f"records[{i}]: expected an object with key (str), seq (int), t_s (number)"
            )
        if not _INT64[0] <= r["seq"] <= _INT64[1]:
            raise ValueError(f"records[{i}].seq must fit in 64 bits (-2^63 .. 2^63-1)")
        if not math.isfinite(r["t_s"]):
            raise ValueError(f"records[{i}].t_s must be a finite number of seconds")
        if not isinstance(r.get("urgent", False), bool):
            raise ValueError(f"records[{i}].urgent must be true or false (an alarm)")
    return msg["device"], records


_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    device TEXT NOT NULL,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    t_s REAL NOT NULL,
    payload TEXT NOT NULL,
    received_s REAL NOT NULL,
    forwarded INTEGER NOT NULL DEFAULT 0,
    urgent INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (device, key)
) WITHOUT ROWID;
"""


class ResultSink:
    """SQLite (WAL, synchronous=FULL) table of delivered results; thread-safe."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        cols = {row[1] for row in self._db.execute("PRAGMA table_info(results)")}
        if "forwarded" not in cols:  # a sink written before results were forwarded upstream
            self._db.execute("ALTER TABLE results ADD COLUMN forwarded INTEGER NOT NULL DEFAULT 0")
        if "urgent" not in cols:  # a sink written before alarms were forwarded first
            self._db.execute("ALTER TABLE results ADD COLUMN urgent INTEGER NOT NULL DEFAULT 0")
        self._db.execute("DROP INDEX IF EXISTS pending_up")  # arrival order only: superseded
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS forward_order "
            "ON results (forwarded, urgent DESC, received_s)"
        )
        self._lock = threading.Lock()

    def ingest(self, device: str, records: list[dict[str, Any]]) -> tuple[int, int]:
        """Store new records durably; return (accepted, duplicates)."""
        now = time.time()
        rows = [
            (
                device,
                str(r["key"]),
                int(r["seq"]),
                float(r["t_s"]),
                json.dumps(r.get("payload", {}), separators=(",", ":"), allow_nan=False),
                now,
                int(r.get("urgent", False) is True),
            )
            for r in records
        ]
        with self._lock:
            before = self._db.total_changes
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # only a replayed key is a duplicate: any other constraint fails loudly
                self._db.executemany(
                    "INSERT INTO results (device, key, seq, t_s, payload, received_s, urgent) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device, key) DO NOTHING",
                    rows,
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            accepted = self._db.total_changes - before
        return accepted, len(rows) - accepted

    def counts(self) -> dict[str, int]:
        """Delivered results per device."""
        with self._lock:
            return dict(self._db.execute("SELECT device, COUNT(*) FROM results GROUP BY device"))

    def keys(self, device: str) -> list[str]:
        with self._lock:
            return [
                k
                for (k,) in self._db.execute(
                    "SELECT key FROM results WHERE device = ? ORDER BY seq", (device,)
                )
            ]

    def unforwarded(self, limit: int = 500) -> dict[str, list[dict[str, Any]]]:
        """Up to ``limit`` stored results not yet forwarded upstream, per device: alarms
        (``urgent``) first, then the rest in the order they arrived (what an edge server's
        forwarder sends next; devices in the order of their first record here)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT device, key, seq, t_s, payload, urgent FROM results WHERE forwarded = 0 "
                "ORDER BY urgent DESC, received_s, device, seq LIMIT ?",
                (limit,),
            ).fetchall()
        out: dict[str, list[dict[str, Any]]] = {}
        for device, key, seq, t_s, payload, urgent in rows:
            rec = {"key": key, "seq": seq, "t_s": t_s, "payload": json.loads(payload)}
            if urgent:
                rec["urgent"] = True
            out.setdefault(device, []).append(rec)
        return out

    def mark_forwarded(self, device: str, keys: list[str]) -> None:
        """Record that the upstream acknowledged these results (durably, one commit)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "UPDATE results SET forwarded = 1 WHERE device = ? AND key = ?",
                    [(device, k) for k in keys],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def pending_upstream(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM results WHERE forwarded = 0").fetchone()
        return int(n)

    def close(self) -> None:
        with self._lock:
            self._db.close()
