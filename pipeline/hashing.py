"""Content hashes and stable ids.

Stage cache keys are built from the content hashes of inputs, never from paths or times, so a moved
workspace still hits and a changed file misses. Hashing a multi-GB video on every run would be slow,
so `file_hash` memoises by (path, size, mtime) in a small SQLite table in the workspace."""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20
_lock = threading.Lock()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the form every hashed object is written in."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def obj_hash(obj: Any) -> str:
    return text_hash(canonical_json(obj))


def stable_id(*parts: Any) -> str:
    """16 hex characters identifying an item by its defining parts (source, video, start, end)."""
    return text_hash("\x1f".join(str(p) for p in parts))[:16]


def file_hash(path: str | os.PathLike, memo_db: str | os.PathLike | None = None) -> str:
    """sha256 of a file, memoised on (absolute path, size, mtime_ns) in `memo_db` when given."""
    path = Path(path).resolve()
    st = path.stat()
    if memo_db is None:
        return sha256_file(path)
    with _lock:
        con = sqlite3.connect(memo_db, timeout=30)
        try:
            con.execute("CREATE TABLE IF NOT EXISTS h (path TEXT PRIMARY KEY, size INT, mtime INT, sha TEXT)")
            row = con.execute("SELECT size, mtime, sha FROM h WHERE path=?", (str(path),)).fetchone()
            if row and row[0] == st.st_size and row[1] == st.st_mtime_ns:
                return row[2]
            sha = sha256_file(path)
            con.execute("INSERT OR REPLACE INTO h VALUES (?,?,?,?)", (str(path), st.st_size, st.st_mtime_ns, sha))
            con.commit()
            return sha
        finally:
            con.close()
