"""Train/dev/test splits.

A source's own split (MELD) is kept. Otherwise each source video is placed by a hash of
(salt, source_id, video_id) mapped to [0, 1) and compared with the cumulative ratios: every video's
split depends only on its own id, so adding videos never moves another, and all segments of one video
land in one split (no speaker or scene leaks between train and test)."""
from __future__ import annotations

import hashlib
from pipeline.formats.dataset import SPLITS



def unit_hash(*parts: str) -> float:
    """A uniform number in [0, 1) from the parts (first 64 bits of their sha256)."""
    h = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2.0 ** 64


def hashed_split(source_id: str, video_id: str, ratios: list[float], salt: str = "") -> str:
    u = unit_hash(salt, str(source_id), str(video_id))
    acc = 0.0
    for name, r in zip(SPLITS, ratios):
        acc += r
        if u < acc:
            return name
    # u is just below 1 and float rounding left the sum a hair short: the last non-empty split
    return [n for n, r in zip(SPLITS, ratios) if r > 0][-1]


def assign_split(row: dict, ratios: list[float], salt: str = "") -> tuple[str, str]:
    """(split, method): the row's official split when it has one, else the hashed split of its video."""
    official = str(row.get("split") or "").strip().lower()
    if official in SPLITS:
        return official, "official"
    if official:
        # a source split we do not know (e.g. "validation"): map the common synonyms, never guess others
        synonyms = {"val": "dev", "valid": "dev", "validation": "dev", "eval": "dev"}
        if official in synonyms:
            return synonyms[official], "official"
        raise ValueError(f"segment {row.get('segment_id')}: unknown split {official!r} in the segment table "
                         f"(column 'split' must be one of {SPLITS} or empty)")
    return hashed_split(row.get("source_id", ""), row.get("video_id", ""), ratios, salt), "hashed"
