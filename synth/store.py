"""Run store: everything a synthesis run tried, in one directory that survives interruption.

A run is a directory holding ``run.sqlite`` (stdlib ``sqlite3``) and a human-readable
``report.md``. The database is the record of the run, not a cache: every candidate any
proposer produced is a row (with its source, its status and the reason for that status),
every number any check produced is a row, and the accepted hypotheses are the candidates
whose status is ``accepted``. Nothing is ever deleted, so the count of hypotheses scored
that the multiple-testing correction needs is simply a ``COUNT`` over this table.

Resuming: a candidate is keyed by the hash of its hypothesis text together with the hash
of the check configuration it was scored under. A restarted run with the same arguments
re-proposes the same candidates (proposers are seeded), finds their keys already stored
and reuses the stored verdicts instead of scoring again. Each candidate is committed as
soon as it is scored, so killing the process at any point loses at most the candidate in
flight. A run directory created with different arguments is refused rather than mixed.

Who may touch a run directory:

* one writer at a time: a store opened for writing holds an exclusive lock on
  ``run.lock`` (``fcntl.flock``, released by the kernel even on ``kill -9``) for as long
  as it is open, so a second run into the same ``--out`` is refused with one line naming
  the holder instead of interleaving its candidates with the first's;
* any number of readers: ``open_run(..., read_only=True)`` (what ``show`` and
  :func:`load_run` use) opens the database read-only and writes nothing, so a run on a
  read-only disk, or one still being written, can be shown;
* only mechsynth: a database that is not a mechsynth run (no ``meta`` table with a schema
  version) is refused, never adopted or extended with our tables.

Everything written is redacted first (:mod:`synth.secrets`). A full disk is reported as
such ("disk full"), and every candidate committed before it stays in the database.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import socket
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Iterator, Mapping, Sequence

from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.synth.accept import SCORED, CandidateStatus, strength, undefined_note
from mechsynth.synth.secrets import redact

DB_NAME = "run.sqlite"
LOCK_NAME = "run.lock"
REPORT_NAME = "report.md"
SCHEMA_VERSION = 1

# Candidate statuses a row may have (synth.accept.CandidateStatus; "passed" is never stored).
STATUSES = tuple(s.value for s in CandidateStatus if s is not CandidateStatus.PASSED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    program TEXT NOT NULL,
    correspondence TEXT NOT NULL,
    source TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    round INTEGER NOT NULL DEFAULT 0,
    meta TEXT NOT NULL DEFAULT '{}',
    seconds REAL NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS scores (
    candidate_id INTEGER NOT NULL REFERENCES candidates(id),
    stage TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (candidate_id, stage, name)
);
CREATE TABLE IF NOT EXISTS timings (
    id INTEGER PRIMARY KEY,
    stage TEXT NOT NULL,
    seconds REAL NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL
);
"""


class RunStoreError(ValueError):
    """A run directory that cannot be created, opened or resumed."""


def candidate_key(hypothesis_text: str, check_config: str) -> str:
    """The resume key: the same hypothesis under the same check configuration is one candidate."""
    return hashlib.sha256((hypothesis_text + "\0" + check_config).encode()).hexdigest()[:32]


def config_hash(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class StoredCandidate:
    """One row of the candidates table with its scores (``{stage: {name: value}}``)."""

    id: int
    key: str
    program: str
    correspondence: Mapping[str, str]
    source: str
    status: str
    reason: str
    round: int
    seconds: float
    meta: Mapping[str, Any] = field(default_factory=dict)
    scores: Mapping[str, Mapping[str, float | None]] = field(default_factory=dict)

    def flat_scores(self) -> dict[str, float | None]:
        """Scores of the full check (stage 'check') merged over the other stages' names."""
        out: dict[str, float | None] = {}
        for stage, values in self.scores.items():
            for name, value in values.items():
                out[name if stage == "check" else f"{stage}.{name}"] = value
        return out

    def hypothesis_json(self) -> dict[str, Any]:
        return {"program": self.program, "correspondence": dict(self.correspondence)}


def is_disk_full(e: BaseException) -> bool:
    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, errno.EDQUOT)
    code = getattr(e, "sqlite_errorcode", None)
    return code == getattr(sqlite3, "SQLITE_FULL", 13) or "disk is full" in str(e)


def _database_error(e: BaseException, where: Path | str) -> RunStoreError:
    """A sqlite3/OS error as one line: a full disk is named as such, not as corruption."""
    if is_disk_full(e):
        return RunStoreError(f"disk full: cannot write the run database in {where}; everything committed "
                             "before is kept (free space and rerun the same command to resume)")
    return RunStoreError(f"corrupt run database {where}: {e}")


class RunStore:
    """An open run directory. Use as a context manager, or call ``close()``.

    ``read_only`` opens an existing run for reading only (no lock, no write of any kind).
    """

    def __init__(self, directory: str | Path, *, create: bool = True, read_only: bool = False) -> None:
        self.dir = Path(directory)
        self.read_only = read_only
        self._lock_fd: int | None = None
        db_path = self.dir / DB_NAME
        if self.dir.exists() and not self.dir.is_dir():
            raise RunStoreError(f"run directory {self.dir} is a file, not a directory")
        if (not create or read_only) and not db_path.exists():
            raise RunStoreError(f"{self.dir} is not a run directory (no {DB_NAME})")
        if not read_only and db_path.exists() and db_path.stat().st_size > 0:
            RunStore(self.dir, read_only=True).close()  # foreign or corrupt: refused before we write a byte
        if not read_only:
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                probe = self.dir / ".write-probe"
                probe.write_text("")
                probe.unlink()
            except OSError as e:
                if is_disk_full(e):
                    raise _database_error(e, self.dir) from None
                raise RunStoreError(f"cannot write run directory {self.dir}: {e.strerror or e}") from None
            self._lock()
        try:
            self._connect(db_path)
        except BaseException:
            self._unlock()
            raise

    def _connect(self, db_path: Path) -> None:
        try:
            if self.read_only:
                # mode=ro writes nothing; a directory we may not write (no journal possible) is
                # read as immutable.
                flags = "mode=ro" if os.access(self.dir, os.W_OK) else "immutable=1"
                self._db = sqlite3.connect(f"{db_path.resolve().as_uri()}?{flags}", uri=True, timeout=10.0)
            else:
                self._db = sqlite3.connect(db_path, timeout=10.0)
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables or self.read_only:
                self._refuse_foreign(db_path, tables)
            if not self.read_only:
                self._db.executescript(_SCHEMA)
            version = self._get_meta("schema_version")
            if version is None:
                self._set_meta("schema_version", SCHEMA_VERSION)
                self._db.commit()
            elif int(version) != SCHEMA_VERSION:
                raise RunStoreError(f"run database {db_path} has schema {version}, expected {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as e:
            raise _database_error(e, db_path) from None

    def _refuse_foreign(self, db_path: Path, tables: set[str]) -> None:
        """A database with tables but no mechsynth schema version is someone else's: never adopt it."""
        version = None
        if "meta" in tables:
            try:
                version = self._get_meta("schema_version")
            except (sqlite3.DatabaseError, ValueError):
                version = None
        if version is None:
            shown = ", ".join(sorted(tables)[:5]) or "none"
            raise RunStoreError(f"{db_path} is not a mechsynth run database (tables: {shown}); "
                                "use another directory")

    def _lock(self) -> None:
        """Take the directory's writer lock, or fail naming the process that holds it."""
        path = self.dir / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunStoreError(f"cannot write run directory {self.dir}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunStoreError(f"run directory {self.dir} is in use by {holder}; wait for that run to end "
                                "or use another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    # --- context manager -------------------------------------------------------------------
    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            if not self.read_only:
                self._db.commit()
            self._db.close()
        except (sqlite3.Error, AttributeError):
            pass
        finally:
            self._unlock()

    def _write(self) -> Any:
        """The connection as a transaction context, a full disk or any database error as one line."""
        return _Writing(self)

    # --- meta ------------------------------------------------------------------------------
    def _get_meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else self._json(row[0], f"meta {key!r}")

    def _json_object(self, text: Any, what: str) -> dict[str, Any]:
        value = self._json(text, what)
        if not isinstance(value, dict):
            raise RunStoreError(f"corrupt run database in {self.dir}: {what} is not a JSON object")
        return value

    def _json(self, text: Any, what: str) -> Any:
        """A stored JSON column; malformed JSON (a damaged or hand-edited row) is one line."""
        try:
            return json.loads(text)
        except (TypeError, ValueError, RecursionError):
            raise RunStoreError(f"corrupt run database in {self.dir}: {what} is not valid JSON") from None

    def _set_meta(self, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(redact(value), default=str)),
        )

    def meta(self) -> dict[str, Any]:
        try:
            rows = self._db.execute("SELECT key, value FROM meta").fetchall()
            return {k: self._json(v, f"meta {k!r}") for k, v in rows}
        except sqlite3.DatabaseError as e:
            raise RunStoreError(f"corrupt run database in {self.dir}: {e}") from None

    def set_meta(self, **values: Any) -> None:
        with self._write():
            for key, value in values.items():
                self._set_meta(key, value)

    def begin(self, args: Mapping[str, Any]) -> bool:
        """Record the run's arguments, or check them on resume. Returns True when resuming.

        Arguments that only affect how long the run may take (the time budget) may differ
        between a run and its resumption; anything else must match, since it would change
        which candidates are proposed or how they are scored.
        """
        stored = self._get_meta("args")
        if stored is None:
            with self._write():
                self._set_meta("args", dict(args))
                self._set_meta("created", time.time())
            return False
        mine = _identity(json.loads(json.dumps(redact(dict(args)), default=str)))
        theirs = _identity(stored)
        if mine != theirs:
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise RunStoreError(
                f"{self.dir} holds a run with different arguments ({', '.join(diff)}); use another --out"
            )
        with self._write():
            self._set_meta("resumed", (self._get_meta("resumed") or 0) + 1)
        return True

    # --- candidates ------------------------------------------------------------------------
    def lookup(self, key: str) -> StoredCandidate | None:
        row = self._db.execute(
            "SELECT id, key, program, correspondence, source, status, reason, round, seconds, meta "
            "FROM candidates WHERE key = ?",
            (key,),
        ).fetchone()
        return None if row is None else self._candidate(row)

    def add_candidate(
        self,
        key: str,
        *,
        program: str,
        correspondence: Mapping[str, str],
        source: str,
        status: str | CandidateStatus,
        reason: str = "",
        round: int = 0,
        seconds: float = 0.0,
        scores: Mapping[str, Mapping[str, float | None]] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> int:
        """Store one candidate and its scores in one transaction (committed before returning)."""
        if status not in STATUSES:
            raise ValueError(f"unknown candidate status {status!r}")
        status = str(status)  # a CandidateStatus is stored as its value
        program, reason = redact(program), redact(reason)
        with self._write():
            cur = self._db.execute(
                "INSERT INTO candidates(key, program, correspondence, source, status, reason, round, meta, "
                "seconds, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET status = excluded.status, reason = excluded.reason, "
                "seconds = excluded.seconds",
                (
                    key,
                    program,
                    json.dumps(dict(correspondence)),
                    source,
                    status,
                    reason,
                    round,
                    json.dumps(redact(dict(meta or {})), default=str),
                    seconds,
                    time.time(),
                ),
            )
            cid = self._db.execute("SELECT id FROM candidates WHERE key = ?", (key,)).fetchone()[0]
            for stage, values in (scores or {}).items():
                for name, value in values.items():
                    self._db.execute(
                        "INSERT OR REPLACE INTO scores(candidate_id, stage, name, value) VALUES (?, ?, ?, ?)",
                        (cid, stage, name, _as_float(value)),
                    )
        del cur
        return cid

    def candidates(self, status: str | None = None) -> Iterator[StoredCandidate]:
        query = (
            "SELECT id, key, program, correspondence, source, status, reason, round, seconds, meta "
            "FROM candidates"
        )
        params: tuple[Any, ...] = ()
        if status is not None:
            query += " WHERE status = ?"
            params = (status,)
        try:
            rows = self._db.execute(query + " ORDER BY id", params).fetchall()
        except sqlite3.DatabaseError as e:
            raise RunStoreError(f"corrupt run database in {self.dir}: {e}") from None
        for row in rows:
            yield self._candidate(row)

    def count(self, *statuses: str) -> int:
        if not statuses:
            return self._db.execute("SELECT COUNT(*) FROM candidates").fetchone()[0]
        marks = ",".join("?" for _ in statuses)
        query = f"SELECT COUNT(*) FROM candidates WHERE status IN ({marks})"
        return self._db.execute(query, statuses).fetchone()[0]

    def counts_by(self, column: str) -> dict[str, int]:
        if column not in ("status", "source"):
            raise ValueError(column)
        query = f"SELECT {column}, COUNT(*) FROM candidates GROUP BY {column}"
        return dict(self._db.execute(query).fetchall())

    def _candidate(self, row: tuple[Any, ...]) -> StoredCandidate:
        cid = row[0]
        scores: dict[str, dict[str, float | None]] = {}
        for stage, name, value in self._db.execute(
            "SELECT stage, name, value FROM scores WHERE candidate_id = ? ORDER BY rowid", (cid,)
        ):
            scores.setdefault(stage, {})[name] = value
        return StoredCandidate(
            id=cid,
            key=row[1],
            program=row[2],
            correspondence=self._json_object(row[3], f"candidate {cid}'s correspondence"),
            source=row[4],
            status=row[5],
            reason=row[6],
            round=row[7],
            seconds=row[8],
            meta=self._json_object(row[9], f"candidate {cid}'s meta"),
            scores=scores,
        )

    # --- timings ---------------------------------------------------------------------------
    def add_timing(self, stage: str, seconds: float, note: str = "") -> None:
        with self._write():
            self._db.execute(
                "INSERT INTO timings(stage, seconds, note, created) VALUES (?, ?, ?, ?)",
                (stage, seconds, note, time.time()),
            )

    def timings(self) -> dict[str, float]:
        """Total seconds per stage over the run and all its resumptions."""
        query = "SELECT stage, SUM(seconds) FROM timings GROUP BY stage ORDER BY MIN(id)"
        return dict(self._db.execute(query))


class _Writing:
    """``with store._write():`` one transaction; sqlite's errors become one-line RunStoreErrors."""

    def __init__(self, store: RunStore) -> None:
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        return self.store._db.__enter__()

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> bool:
        try:
            self.store._db.__exit__(kind, error, tb)  # commit, or roll back on error
        except sqlite3.DatabaseError as e:
            raise _database_error(e, self.store.dir / DB_NAME) from None
        if isinstance(error, sqlite3.DatabaseError):
            raise _database_error(error, self.store.dir / DB_NAME) from None
        return False


def open_run(directory: str | Path, *, read_only: bool = False) -> RunStore:
    """Open an existing run directory (read/write, or ``read_only``); a clear error when it is
    not one, is corrupt or is not a mechsynth run."""
    path = Path(directory)
    if not path.exists():
        raise RunStoreError(f"no run directory at {path}")
    if not (path / DB_NAME).is_file():
        raise RunStoreError(f"{path} is not a run directory (no {DB_NAME})")
    store = RunStore(path, create=False, read_only=read_only)
    meta = store.meta()
    if "args" not in meta:
        store.close()
        raise RunStoreError(f"{path} is not a complete run directory (no recorded arguments)")
    return store


def _as_float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


_VOLATILE_ARGS = frozenset({"budget_seconds", "json", "out"})


def _identity(args: Mapping[str, Any]) -> dict[str, Any]:
    """A run's arguments without those that may change on resume (at the top level and in
    the loop's ``options``)."""
    out = {}
    for key, value in args.items():
        if key in _VOLATILE_ARGS:
            continue
        if key == "options" and isinstance(value, Mapping):
            value = {k: v for k, v in value.items() if k not in _VOLATILE_ARGS}
        out[key] = value
    return out


# --- a run as stored ------------------------------------------------------------------------------
@dataclass(frozen=True)
class AcceptedHypothesis:
    hypothesis: Hypothesis
    scores: Mapping[str, float | None]
    source: str
    candidate_id: int

    def to_json(self) -> dict[str, Any]:
        return {
            "program": str(self.hypothesis.program),
            "correspondence": {k: str(v) for k, v in self.hypothesis.correspondence.items()},
            "scores": {k: v for k, v in self.scores.items() if "." not in k},
            # The controls' numbers: raw and Holm-adjusted p, null draws, each control's gate.
            "controls": {
                k.removeprefix("controls."): v for k, v in self.scores.items() if k.startswith("controls.")
            },
            "source": self.source,
            "candidate": self.candidate_id,
            # In words, when loss recovered is undefined (synth.accept.undefined_note), else None.
            "loss_recovered_note": undefined_note(self.scores),
        }


@dataclass(frozen=True)
class Run:
    """A run as stored: its directory, accepted hypotheses and counts (see :func:`load_run`)."""

    target: str
    dir: Path
    accepted: tuple[AcceptedHypothesis, ...]
    n_scored: int
    n_candidates: int
    seconds: float
    stopped: str
    args: Mapping[str, Any]
    counts: Mapping[str, int]
    sources: Mapping[str, int]
    timings: Mapping[str, float]
    # proposer -> its component-by-component explanation (dicts of ComponentExplanation.to_json)
    explanations: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)

    def candidates(self) -> list[StoredCandidate]:
        with open_run(self.dir, read_only=True) as store:
            return list(store.candidates())

    def best(self, k: int = 5) -> list[StoredCandidate]:
        """The k best scored candidates (by the weakest of behaviour, loss recovered and IIA)."""
        done = (CandidateStatus.FAILED, CandidateStatus.ACCEPTED)
        scored = [c for c in self.candidates() if c.status in done]
        return sorted(scored, key=lambda c: -strength(c.flat_scores()))[:k]

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "accepted": [a.to_json() for a in self.accepted],
            "n_scored": self.n_scored,
            "n_candidates": self.n_candidates,
            "seconds": round(self.seconds, 3),
            "stopped": self.stopped,
            "dir": str(self.dir),
            "counts": dict(self.counts),
            "sources": dict(self.sources),
            "thresholds": dict(self.args.get("options", {}).get("thresholds", {})),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "explanations": {k: [dict(c) for c in v] for k, v in self.explanations.items()},
        }


EXPLANATION_PREFIX = "explanation:"


def explanations(meta: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each proposer's stored partial explanation (see ``synth.loop``'s ``record_explanation``)."""
    return {
        k.removeprefix(EXPLANATION_PREFIX): list(v or [])
        for k, v in sorted(meta.items())
        if k.startswith(EXPLANATION_PREFIX)
    }





def load_run(path: str | Path) -> Run:
    """A stored run (finished, interrupted or still running)."""
    from mechsynth.dsl.errors import HypothesisError

    with open_run(path, read_only=True) as store:
        meta = store.meta()
        accepted = []
        for c in store.candidates(CandidateStatus.ACCEPTED):
            try:
                hyp = Hypothesis.from_json(c.hypothesis_json())
            except (HypothesisError, ValueError) as e:
                raise RunStoreError(
                    f"{path}: stored candidate {c.id} does not parse: {_first_line(e)}"
                ) from None
            accepted.append(AcceptedHypothesis(hyp, c.flat_scores(), c.source, c.id))
        counts = store.counts_by("status")
        timings = store.timings()
        return Run(
            target=meta["args"].get("target", "?"),
            dir=Path(path),
            accepted=tuple(accepted),
            n_scored=sum(counts.get(s, 0) for s in SCORED),
            n_candidates=sum(counts.values()),
            seconds=float(timings.get("total", 0.0)),
            stopped=str(meta.get("stopped", "running or killed")),
            args=meta["args"],
            counts=counts,
            sources=store.counts_by("source"),
            timings=timings,
            explanations=explanations(meta),
        )


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines()[0] if str(e) else type(e).__name__)[:200]
