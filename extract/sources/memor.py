"""MEmoR on disk: `data.json` keyed by clip id, read through a documented, overridable field mapping.

MEmoR's exact transcript fields are not public, so every field we read goes through FIELDS; override
any of them with `sources.memor_fields` (e.g. `sources.memor_fields={text: utterance}`). A field
missing from an entry is an error naming the field, the entry and the override to set. Dotted names
reach nested values (`meta.speaker`). See docs/sources.md for the table.
"""
from __future__ import annotations


from extract.sources.common import (STAGE, ProbeMemo, Provenance, RowError, check_span, fit_span, loads_json,
                                    norm_split, parse_time, segment_row)
from pipeline.records import Reason, Record, failed, ok, skipped

# our name → data.json field. Required: text, start, end. Empty string = not read.
FIELDS: dict[str, str] = {
    "text": "sentence",        # the utterance's transcript (required)
    "start": "seg_start",      # segment start, seconds in the clip's own timeline (× memor.time_scale)
    "end": "seg_end",          # segment end (required)
    "offset": "",              # optional: a time subtracted from start/end (set "start" if seg_* are episode times)
    "speaker": "speakers",     # a name or a list of names (joined with '+')
    "emotion": "emotion",      # a label or a list (the first is kept)
    "split": "split",          # train/dev/test when the release has it
    "video": "",               # optional: clip path relative to the root; default memor.video_pattern
}
REQUIRED = ("text", "start", "end")


def field_map(overrides: dict[str, str]) -> dict[str, str]:
    bad = sorted(set(overrides) - set(FIELDS))
    if bad:
        raise RowError(Reason.BAD_ROW, f"sources.memor_fields has unknown key(s) {bad}; known: {sorted(FIELDS)}")
    return FIELDS | dict(overrides)


def _get(d: dict, dotted: str):
    cur = d
    for k in dotted.split("."):
        if not isinstance(cur, dict) or k not in cur:
            raise KeyError(dotted)
        cur = cur[k]
    return cur


def _value(d: dict, name: str, fmap: dict, where: str, required: bool):
    key = fmap.get(name, "")
    if not key:
        return None
    try:
        v = _get(d, key)
    except KeyError:
        if required:
            raise RowError(Reason.BAD_ROW, f"{where}: field {key!r} (our {name!r}) is missing; map it with "
                                           f"sources.memor_fields.{name}=FIELD") from None
        return None
    return v


def _as_text(v, join: str = " ") -> str:
    if v is None:
        return ""
    if isinstance(v, (list, tuple)):
        return join.join(str(x) for x in v if x is not None)
    return str(v)


def read_memor(entry, manifest, ctx, memo: ProbeMemo) -> tuple[list[dict], list[Record]]:
    cfg = ctx.cfg.sources
    root = manifest.resolve(entry.root)
    path = root / entry.data_json
    prov = Provenance(license=manifest.license_of(entry))
    if not path.exists():
        return [], [failed(STAGE, entry.id, Reason.MISSING_FILE, f"{path}: MEmoR data.json does not exist")]
    try:
        fmap = field_map(cfg.memor_fields)
        data = loads_json(path.read_text(encoding="utf-8"))
    except RowError as e:
        return [], [failed(STAGE, entry.id, e.reason, e.detail)]
    except (ValueError, OSError) as e:
        return [], [failed(STAGE, entry.id, Reason.BAD_ROW, f"{path}: not readable JSON ({e})")]
    if isinstance(data, list):   # a list of entries: each names its clip in 'clip' or 'id'
        data = {str(d.get("clip", d.get("id", i))) if isinstance(d, dict) else str(i): d for i, d in enumerate(data)}
    if not isinstance(data, dict):
        return [], [failed(STAGE, entry.id, Reason.BAD_ROW, f"{path}: top level must be an object keyed by clip")]
    rows, recs = [], []
    for key in sorted(data):
        d = data[key]
        where = f"{path.name} entry {key!r}"
        item = f"{entry.id}/{key}"
        try:
            if not isinstance(d, dict):
                raise RowError(Reason.BAD_ROW, f"{where}: is a {type(d).__name__}, not an object")
            text = _as_text(_value(d, "text", fmap, where, True))
            scale = cfg.memor.time_scale
            t0 = parse_time(_value(d, "start", fmap, where, True), f"{where} field {fmap['start']!r}") * scale
            t1 = parse_time(_value(d, "end", fmap, where, True), f"{where} field {fmap['end']!r}") * scale
            off = _value(d, "offset", fmap, where, True)
            if off is not None:
                o = parse_time(off, f"{where} field {fmap['offset']!r}") * scale
                t0, t1 = t0 - o, t1 - o
            if not text.strip():
                raise RowError(Reason.EMPTY_TEXT, f"{where}: field {fmap['text']!r} is empty", "skipped")
            check_span(t0, t1, where, cfg.table.max_span_s)
            vrel = _as_text(_value(d, "video", fmap, where, True)) or cfg.memor.video_pattern.format(clip=key)
            video = (root / vrel).resolve()
            if root.resolve() not in video.parents:
                raise RowError(Reason.BAD_ROW, f"{where}: video path {vrel!r} leaves the MEmoR root")
            pr = memo.probe(video)
            t0, t1 = fit_span(t0, t1, pr["duration"], cfg.span_slack_s, f"{where} ({video.name})")
            emo = _value(d, "emotion", fmap, where, False)
            emo = emo[0] if isinstance(emo, (list, tuple)) and emo else emo
            split = norm_split(_as_text(_value(d, "split", fmap, where, False)), where)
            rows.append(segment_row(source_id=entry.id, source_kind="memor", video_id=str(key), video_path=video,
                                    video_hash=pr["hash"], start=t0, end=t1, text=text,
                                    speaker=_as_text(_value(d, "speaker", fmap, where, False), "+"),
                                    emotion=_as_text(emo), split=split, prov=prov))
            recs.append(ok(STAGE, item, output=str(video)))
        except RowError as e:
            fn = skipped if e.status == "skipped" else failed
            recs.append(fn(STAGE, item, e.reason, e.detail))
        except (ValueError, OverflowError, TypeError) as e:   # an absurd value is this entry's failure
            recs.append(failed(STAGE, item, Reason.BAD_ROW, f"{where}: unusable value ({type(e).__name__}: "
                                                            f"{str(e)[:200]})"))
    return rows, recs
