"""The job records of ``serve``, in SQLite, so the queue survives a crash or a restart.

One file, ``jobs.sqlite``, in the store folder beside the job folders (``<id>/``). The
records are the truth: a folder no record owns is an orphan, swept at start. Every state
change is written here before it takes effect in memory, so a crash at any point leaves
a record that says where the job was. One connection serves every thread, behind a lock;
it holds the file in SQLite's exclusive mode, so a second ``serve`` on the same store is
refused instead of running the same jobs twice.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nas_sr.errors import ConfigError

DB_NAME = "jobs.sqlite"
VERSION = 1  # PRAGMA user_version of the schema below; another is refused
SCHEMA = """CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- upload order, kept across restarts
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    input TEXT NOT NULL,                    -- file names inside the job's folder
    result TEXT NOT NULL,
    settings TEXT NOT NULL,                 -- JSON: name, model, scale, size, frames, notes
    state TEXT NOT NULL,                    -- queued, running, done, failed, cancelled
    done INTEGER NOT NULL, total INTEGER NOT NULL,
    runs INTEGER NOT NULL,                  -- times started and cut off by a crash or not
    error TEXT,
    created REAL NOT NULL, updated REAL NOT NULL, started REAL, finished REAL)"""
OWN_FILES = {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal"}


@dataclass
class Record:
    """One job as stored (paths relative to its folder, ``store/<id>``)."""

    id: str
    kind: str
    input: str
    result: str
    settings: dict[str, Any]
    state: str = "queued"
    done: int = 0
    total: int = 0
    runs: int = 0
    error: str | None = None
    created: float = 0.0
    started: float | None = None
    finished: float | None = None


class JobStore:
    """The records of one store folder (or of memory, for tests that need no restart)."""

    def __init__(self, path: Path | None = None):
        self.path = path
        self._lock = threading.Lock()
        self._db = _open(path)

    def add(self, record: Record) -> None:
        row = _row(record)
        with self._lock, self._db:
            self._db.execute(f"INSERT INTO jobs ({', '.join(row)}) VALUES "
                             f"({', '.join('?' * len(row))})", list(row.values()))

    def save(self, record: Record) -> None:
        row = _row(record)
        with self._lock, self._db:
            self._db.execute(f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in row)} "
                             "WHERE id = ?", [*row.values(), record.id])

    def delete(self, job_id: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def records(self) -> list[Record]:
        """Every record, in upload order."""
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(FIELDS)} FROM jobs ORDER BY seq")
            return [Record(**{**dict(zip(FIELDS, r, strict=True)),
                              "settings": json.loads(r[FIELDS.index("settings")])})
                    for r in rows.fetchall()]

    def close(self) -> None:
        with self._lock:
            self._db.close()


FIELDS = [k for k in Record.__dataclass_fields__]


def _row(record: Record) -> dict[str, Any]:
    row = asdict(record)
    row["settings"] = json.dumps(row["settings"])
    row["updated"] = time.time()
    return row


def _open(path: Path | None) -> sqlite3.Connection:
    """The store's connection, its schema checked (or made, in a new file); a file that
    is not a job store of this version, or one another process holds, is one line."""
    db = sqlite3.connect(":memory:" if path is None else path, timeout=0.2,
                         isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA locking_mode = EXCLUSIVE")  # held until closed: one serve a store
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # WAL: a power cut may lose the last
        with db:                                   # commits, never the file's consistency
            db.execute("BEGIN EXCLUSIVE")
            _check_schema(db, path)
    except sqlite3.OperationalError as e:
        db.close()
        if "locked" in str(e):
            raise ConfigError(f"{path}: in use by another process (a nas-sr serve of the "
                              f"same store?); stop it, or give this one another store=") from None
        raise ConfigError(f"{path}: cannot open the job store ({e})") from None
    except sqlite3.DatabaseError as e:
        db.close()
        raise ConfigError(f"{path}: not a nas-sr serve job store ({e}); move it aside "
                          f"(its job folders are then swept) or give another store=") from None
    except ConfigError:
        db.close()
        raise
    return db


def _check_schema(db: sqlite3.Connection, path: Path | None) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if version == 0 and not tables:  # a new file
        db.execute(SCHEMA)
        db.execute(f"PRAGMA user_version = {VERSION}")
    elif version != VERSION or "jobs" not in tables:
        raise ConfigError(f"{path}: a job store of version {version}, and this nas-sr reads "
                          f"version {VERSION}; move it aside (its job folders are then "
                          f"swept) or give another store=")


def check_folder(store: Path) -> None:
    """Refuses a ``store=`` folder that holds files but no job records: the start sweeps
    what no record owns, and must never sweep a folder named by mistake."""
    if store.is_dir() and not (store / DB_NAME).exists() and any(store.iterdir()):
        raise ConfigError(f"store={store}: the folder holds files but no {DB_NAME}, so it "
                          "is not a serve job store; name an empty or new folder")


def sweep_orphans(store: Path, owned: set[str]) -> list[str]:
    """Removes what no record owns in ``store`` (a folder of an upload cut off by a crash,
    or of a job whose record was deleted); the names removed."""
    swept = []
    for entry in sorted(store.iterdir()):
        if entry.name in owned or entry.name in OWN_FILES:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        swept.append(entry.name)
    return swept
