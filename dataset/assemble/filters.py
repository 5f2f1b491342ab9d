"""Per-sample filters: read each segment's expression codes and decide whether it enters the dataset.

Every rejection becomes a Record (stage "assemble") with a Reason and a detail naming the figure, so the
dataset card and report can show exactly why samples are missing."""
from __future__ import annotations

import unicodedata

import numpy as np

from pipeline.config.assemble import AssembleConfig
from pipeline.formats import FormatError
from pipeline.formats.codes import Codes, read_codes
from pipeline.records import Reason, Record, failed, ok, skipped
from pipeline.progress import progress

STAGE = "assemble"


class AssembleError(ValueError):
    """A problem with the inputs as a whole (mixed code spaces, a bad setting): the build must stop."""


def has_letter(text: str) -> bool:
    return any(unicodedata.category(c).startswith("L") for c in text)


def text_problem(text: str, cfg: AssembleConfig) -> tuple[Reason, str, dict] | None:
    t = (text or "").strip()
    if not t:
        return Reason.EMPTY_TEXT, "text is empty", {}
    if not has_letter(t):
        return Reason.TEXT_NO_LETTERS, f"text {t[:40]!r} has no letters", {}
    n = len(t.split())
    if n > cfg.max_words:
        return Reason.TEXT_TOO_LONG, f"text has {n} words > max_words {cfg.max_words}", {"words": n}
    return None


def codes_problem(c: Codes, cfg: AssembleConfig) -> tuple[Reason, str, dict] | None:
    n = c.codes.shape[0]
    if n < cfg.min_frames:
        return Reason.TOO_FEW_FRAMES, f"{n} frames < min_frames {cfg.min_frames}", {"frames": n}
    if n > cfg.max_frames:
        return (Reason.TOO_MANY_FRAMES, f"{n} frames > max_frames {cfg.max_frames} "
                f"({n / c.fps:.1f} s at {c.fps:g} fps)", {"frames": n})
    ratio = float(c.valid.mean())
    if ratio < cfg.min_valid_ratio:
        return (Reason.LOW_VALID_RATIO, f"valid-frame ratio {ratio:.3f} < min_valid_ratio {cfg.min_valid_ratio}",
                {"valid_ratio": round(ratio, 4)})
    bad = ~np.isfinite(c.codes)
    if bad.any():
        f, d = np.argwhere(bad)[0]
        return (Reason.NON_FINITE, f"{int(bad.sum())} non-finite code values (first: frame {f}, dim "
                f"{c.dims[d]!r} = {c.codes[f, d]})", {"non_finite": int(bad.sum())})
    bounds = cfg.code_bounds.get(c.code_space)
    if bounds is not None:
        lo, hi = bounds
        mn, mx = float(c.codes.min()), float(c.codes.max())
        if mn < lo or mx > hi:
            worst = int(np.argmin(c.codes.min(0))) if mn < lo else int(np.argmax(c.codes.max(0)))
            return (Reason.OUT_OF_RANGE, f"codes span [{mn:.4g}, {mx:.4g}] outside code_bounds[{c.code_space!r}] "
                    f"[{lo}, {hi}] (dim {c.dims[worst]!r})", {"min": mn, "max": mx})
    return None


def duplicate_key(row: dict) -> tuple:
    """Same text (case- and space-insensitive), same video (by content hash when known) and same span."""
    video = row.get("video_hash") or f"{row.get('source_id', '')}/{row.get('video_id', '')}"
    text = " ".join(str(row.get("text", "")).split()).casefold()
    return (text, video, round(float(row["start"]), 2), round(float(row["end"]), 2))


def sort_key(row: dict) -> tuple:
    return (str(row.get("source_id", "")), str(row.get("video_id", "")), float(row.get("start", 0.0)),
            float(row.get("end", 0.0)), str(row["segment_id"]))


def select(rows: list[dict], cfg: AssembleConfig, exclude: set[str] | None = None
           ) -> tuple[list[tuple[dict, Codes]], list[Record], Codes | None]:
    """Apply every filter to the segment rows that have codes. Rows are visited in a fixed order (source,
    video, start) so which copy of a duplicate survives never depends on the input order. Returns the kept
    (row, codes) pairs, one record per row, and the first readable codes (the dataset's code space)."""
    kept: list[tuple[dict, Codes]] = []
    recs: list[Record] = []
    seen: dict[tuple, str] = {}
    space: Codes | None = None
    exclude = exclude or set()
    for row in progress(sorted(rows, key=sort_key), "assemble: filters"):
        sid = str(row["segment_id"])
        if sid in exclude:
            recs.append(skipped(STAGE, sid, Reason.EXCLUDED, "listed in the exclusion file"))
            continue
        tp = text_problem(str(row.get("text", "")), cfg)
        if tp:
            recs.append(skipped(STAGE, sid, tp[0], tp[1], **tp[2]))
            continue
        try:
            c = read_codes(row["codes_dir"], cfg.use_smoothed)
        except FormatError as e:
            recs.append(failed(STAGE, sid, Reason.MISSING_FILE if e.missing else Reason.ERROR, str(e)))
            continue
        if space is None:
            space = c
        elif (c.code_space, c.dims) != (space.code_space, space.dims):
            raise AssembleError(
                f"mixed code spaces: {c.source} has {c.code_space} with {len(c.dims)} dims but {space.source} "
                f"has {space.code_space} with {len(space.dims)} dims; one dataset holds one code space "
                f"(rerun the expressions stage with one backend)")
        cp = codes_problem(c, cfg)
        if cp:
            recs.append(skipped(STAGE, sid, cp[0], cp[1], **cp[2]))
            continue
        k = duplicate_key(row)
        if k in seen:
            recs.append(skipped(STAGE, sid, Reason.DUPLICATE,
                                f"same text, video and span as sample {seen[k]}", duplicate_of=seen[k]))
            continue
        seen[k] = sid
        kept.append((row, c))
        recs.append(ok(STAGE, sid, frames=int(c.codes.shape[0]), valid_ratio=round(float(c.valid.mean()), 4)))
    return kept, recs, space
