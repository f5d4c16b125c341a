"""A device's store-and-forward queue: SQLite (WAL) with group commit.

Every result is appended here *before* anything else happens to it; an
append returns only once its transaction has committed (``synchronous=FULL``:
the WAL is fsynced), so a result the agent counted as produced survives a
``kill -9`` of the agent. Appends from concurrent producers within
``group_commit_ms`` share one commit (one fsync), which is what makes tens of
thousands of durable appends per second possible where one fsync per message
gives a few hundred.

Results leave the store in order (``pending``), urgent ones first: a result appended
with ``priority`` (an anomaly alarm, ``TaskKind.urgent``) jumps the queue of stored
results, so when the link returns after an outage the alarms go out in the first
delivery, then the backlog in append order. They are deleted only when the server
has acknowledged them (``ack`` of the delivered rows); a crash between the server's
commit and the ack replays them, and the server drops the replay by idempotency key.
``ttl_s`` expires undelivered results; ``max_records`` bounds the queue and
``on_full`` rejects the new result or drops the oldest (an ordinary result before any
urgent one). Every such loss is counted, never silent.

With ``encrypt`` (and the device's ``key``) each result's time and payload are
sealed before they reach the file (``security.store_crypto``: AES-256-GCM bound to
the row's idempotency key); the file holds only keys, creation times, the priority
flag (so that alarms can be sent first without opening a record), counters and
ciphertext. A key check sealed into the file refuses another key at open; a record
that fails authentication raises ``StoreCorrupt`` and nothing is deleted. A plaintext
store opened with encryption on is sealed in place (nothing lost); an encrypted one
opened without it is refused.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeintel.errors import ConfigError, EdgeIntelError, StoreCorrupt, StoreFull
from edgeintel.runtime.settings import OnFull, StoreSettings

__all__ = ["AppendTicket", "DeviceStore", "StoreCorrupt", "StoreFull", "StoredResult"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    t_s REAL NOT NULL,
    created_s REAL NOT NULL,
    payload TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sealed (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;
"""
_CHECK = "key-check"  # a sealed known value: a wrong key is refused when the store opens
_COUNTERS = ("appended", "delivered", "duplicates", "dropped", "expired", "rejected", "next_index")


@dataclass(frozen=True)
class StoredResult:
    seq: int
    key: str
    t_s: float
    payload: dict[str, Any]
    urgent: bool = False  # an alarm: every hop up forwards it ahead of its backlog

    def to_json(self) -> dict[str, Any]:
        out = {"seq": self.seq, "key": self.key, "t_s": self.t_s, "payload": self.payload}
        if self.urgent:
            out["urgent"] = True
        return out


@dataclass
class AppendTicket:
    """A queued append; ``wait()`` blocks until it is committed (durable).

    Tickets share one condition variable per store (no lock or event per append): the
    writer marks a whole group done and wakes the waiters once.
    """

    key: str
    t_s: float
    payload: str
    index: int | None
    _cv: threading.Condition
    priority: bool = False
    done: bool = False
    error: BaseException | None = None

    def wait(self, timeout_s: float | None = None) -> None:
        with self._cv:
            if not self._cv.wait_for(lambda: self.done, timeout_s):
                raise TimeoutError(f"append of {self.key!r} not committed in {timeout_s} s")
        if self.error is not None:
            raise self.error


class DeviceStore:
    """The per-device SQLite queue. Thread-safe; one writer thread does the commits.

    ``key``: the device's 32-byte store key (``security.store_crypto.device_key``),
    required exactly when ``settings.encrypt``."""

    def __init__(
        self,
        path: str | Path,
        settings: StoreSettings | None = None,
        clock: Callable[[], float] = time.time,
        key: bytes | None = None,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.settings = settings or StoreSettings()
        self._clock = clock
        self._cipher = self._make_cipher(key)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        cols = {row[1] for row in self._db.execute("PRAGMA table_info(pending)")}
        if "priority" not in cols:  # a store written before urgent results jumped the queue
            self._db.execute("ALTER TABLE pending ADD COLUMN priority INTEGER NOT NULL DEFAULT 0")
        self._db.execute("CREATE INDEX IF NOT EXISTS forward_order ON pending (priority DESC, seq)")
        try:
            self._check_sealing()
        except BaseException:
            self._db.close()
            raise
        self._lock = threading.Lock()
        self.counters = {k: 0 for k in _COUNTERS}
        for k, v in self._db.execute("SELECT k, v FROM meta"):
            self.counters[k] = int(v)
        self._size = int(self._db.execute("SELECT COUNT(*) FROM pending").fetchone()[0])
        self._queue: list[AppendTicket] = []
        self._cv = threading.Condition()
        self._done = threading.Condition()
        self._closed = False
        self.commits = 0
        self._writer = threading.Thread(target=self._write_loop, name="store-writer", daemon=True)
        self._writer.start()

    # ------------------------------------------------------------------ sealing

    def _make_cipher(self, key: bytes | None) -> Any:
        if not self.settings.encrypt:
            if key is not None:
                raise ConfigError(
                    f"{self.path}: a store key without settings.runtime.store.encrypt: true"
                )
            return None
        if key is None:
            raise ConfigError(
                f"{self.path}: settings.runtime.store.encrypt is true but no store key was "
                "given (edgeintel device --store-key FILE)"
            )
        from edgeintel.security.store_crypto import RecordCipher

        return RecordCipher(key, str(self.path))

    def _check_sealing(self) -> None:
        """Refuse a wrong key or a missing one; seal a plaintext backlog in place."""
        row = self._db.execute("SELECT v FROM sealed WHERE k = ?", (_CHECK,)).fetchone()
        if row is not None and self._cipher is None:
            raise ConfigError(
                f"{self.path}: the store is encrypted; set settings.runtime.store.encrypt: "
                "true and give its key (--store-key)"
            )
        if self._cipher is None:
            return
        if row is not None:
            try:
                self._cipher.open(_CHECK, row[0])
            except StoreCorrupt:
                raise StoreCorrupt(
                    f"{self.path}: the store key does not open this store (another device's "
                    "or another run's key?)"
                ) from None
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = db.execute("SELECT seq, key, t_s, payload FROM pending").fetchall()
            db.executemany(
                "UPDATE pending SET t_s = 0, payload = ? WHERE seq = ?",
                [(self._seal(k, t, p), seq) for seq, k, t, p in rows],
            )
            db.execute(
                "INSERT INTO sealed (k, v) VALUES (?, ?)",
                (_CHECK, self._cipher.seal(_CHECK, b"edgeintel")),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _seal(self, key: str, t_s: float, payload: str) -> str:
        """The stored form of a record's time and payload (JSON text) under encryption."""
        body = '{"t_s":' + json.dumps(t_s) + ',"payload":' + payload + "}"
        return str(self._cipher.seal(key, body.encode()))

    def _unseal(self, seq: int, key: str, t_s: float, stored: str, urgent: int = 0) -> StoredResult:
        if self._cipher is None:
            return StoredResult(seq, key, t_s, json.loads(stored), bool(urgent))
        body = json.loads(self._cipher.open(key, stored))
        return StoredResult(seq, key, float(body["t_s"]), body["payload"], bool(urgent))

    # ------------------------------------------------------------------ writing

    def append(
        self,
        key: str,
        t_s: float,
        payload: dict[str, Any],
        index: int | None = None,
        priority: bool = False,
    ) -> None:
        """Durably append one result; returns after its commit. ``index`` (the stream
        position) is stored as ``next_index = index + 1`` in the same transaction, so a
        restarted agent resumes exactly after the last durable result. ``priority``: the
        result is forwarded before every ordinary stored one (an alarm)."""
        self.append_nowait(key, t_s, payload, index, priority).wait()

    def append_nowait(
        self,
        key: str,
        t_s: float,
        payload: dict[str, Any],
        index: int | None = None,
        priority: bool = False,
    ) -> AppendTicket:
        """Queue one append for the next group commit; the ticket's ``wait()`` returns once
        it is durable (or raises ``StoreFull``). A producer that keeps going while its
        results commit gets many results per fsync."""
        text = json.dumps(payload, separators=(",", ":"))
        if self._cipher is not None:  # sealed here, in the producer's thread
            text, t_s = self._seal(key, t_s, text), 0.0
        op = AppendTicket(key, t_s, text, index, self._done, priority=priority)
        with self._cv:
            if self._closed:
                raise EdgeIntelError(f"{self.path}: store is closed")
            self._queue.append(op)
            self._cv.notify()
        return op

    def _write_loop(self) -> None:
        window = self.settings.group_commit_ms / 1000
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue and self._closed:
                    return
            if window > 0:
                time.sleep(window)  # let concurrent producers join this commit
            with self._cv:
                ops, self._queue = self._queue, []
            self._commit(ops)

    def _commit(self, ops: list[AppendTicket]) -> None:
        now = self._clock()
        with self._lock:
            db = self._db
            saved = dict(self.counters)
            size = self._size
            try:
                db.execute("BEGIN IMMEDIATE")
                if size + len(ops) <= self.settings.max_records:
                    # common case, room for all: one executemany for the whole group
                    cur = db.executemany(
                        "INSERT OR IGNORE INTO pending (key, t_s, created_s, payload, priority) "
                        "VALUES (?, ?, ?, ?, ?)",
                        [(op.key, op.t_s, now, op.payload, int(op.priority)) for op in ops],
                    )
                    size += cur.rowcount
                    self.counters["appended"] += cur.rowcount
                    indices = [op.index for op in ops if op.index is not None]
                    if indices:
                        self.counters["next_index"] = max(
                            self.counters["next_index"], max(indices) + 1
                        )
                    ops_slow: list[AppendTicket] = []
                else:
                    ops_slow = ops
                for op in ops_slow:
                    if size >= self.settings.max_records:
                        if self.settings.on_full is OnFull.REJECT_NEW:
                            op.error = StoreFull(
                                f"{self.path}: {size} undelivered results (max_records); "
                                "new result rejected"
                            )
                            self.counters["rejected"] += 1
                            continue
                        size -= db.execute(  # the oldest ordinary result goes first
                            "DELETE FROM pending WHERE seq = (SELECT seq FROM pending "
                            "ORDER BY priority, seq LIMIT 1)"
                        ).rowcount
                        self.counters["dropped"] += 1
                    cur = db.execute(
                        "INSERT OR IGNORE INTO pending (key, t_s, created_s, payload, priority) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (op.key, op.t_s, now, op.payload, int(op.priority)),
                    )
                    size += cur.rowcount
                    self.counters["appended"] += cur.rowcount
                    if op.index is not None:
                        self.counters["next_index"] = max(self.counters["next_index"], op.index + 1)
                self._save_counters()
                db.execute("COMMIT")
                self._size = size
                self.commits += 1
            except BaseException as exc:
                db.execute("ROLLBACK")
                self.counters = saved
                for op in ops:
                    op.error = op.error or exc
        with self._done:
            for op in ops:
                op.done = True
            self._done.notify_all()

    def _save_counters(self) -> None:
        self._db.executemany(
            "INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
            list(self.counters.items()),
        )

    # ------------------------------------------------------------------ forwarding

    def pending(self, limit: int) -> list[StoredResult]:
        """The next ``limit`` undelivered results: the urgent ones first, each group in
        append order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, key, t_s, payload, priority FROM pending "
                "ORDER BY priority DESC, seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [self._unseal(*row) for row in rows]

    def ack(self, seqs: Sequence[int], delivered: int, duplicates: int = 0) -> None:
        """The server stored the results ``seqs`` (those ``pending`` gave): delete them from
        the queue. Not a range: urgent results leave out of append order."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            removed = self._db.executemany(
                "DELETE FROM pending WHERE seq = ?", [(int(q),) for q in seqs]
            ).rowcount
            self.counters["delivered"] += delivered
            self.counters["duplicates"] += duplicates
            self._save_counters()
            self._db.execute("COMMIT")
            self._size -= removed

    def expire(self) -> int:
        """Delete undelivered results older than ``ttl_s``; returns how many."""
        cutoff = self._clock() - self.settings.ttl_s
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            n = self._db.execute("DELETE FROM pending WHERE created_s < ?", (cutoff,)).rowcount
            self.counters["expired"] += n
            self._save_counters()
            self._db.execute("COMMIT")
            self._size -= n
        return n

    @property
    def size(self) -> int:
        """Undelivered results."""
        return self._size

    @property
    def next_index(self) -> int:
        """Stream position after the last durable result (where a restarted agent resumes)."""
        return self.counters["next_index"]

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._writer.join()
        with self._lock:
            self._db.close()

    def __enter__(self) -> DeviceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
