"""A folder of clips with sidecar captions, and the caption → segment step YouTube shares."""
from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from extract.captions import CaptionError, Utterance, caption_utterances
from extract.sources.common import STAGE, LocalVideoIds, ProbeMemo, Provenance, RowError, fit_span, placeholder_row, segment_row
from pipeline.records import Reason, Record, failed, ok, skipped


def find_sidecar(clip: Path, langs: list[str]) -> Path | None:
    """`stem.LANG.vtt` (preferred languages first), `stem.vtt`, `stem.srt`, then any `stem.*.vtt|srt`."""
    cands = [clip.with_name(f"{clip.stem}.{lang}.{ext}") for lang in langs for ext in ("vtt", "srt")]
    cands += [clip.with_suffix(".vtt"), clip.with_suffix(".srt")]
    cands += sorted(clip.parent.glob(f"{clip.stem}.*.vtt")) + sorted(clip.parent.glob(f"{clip.stem}.*.srt"))
    return next((c for c in cands if c.is_file()), None)


def caption_rows(utts: list[Utterance], *, duration: float, slack: float, where: str, offset: float = 0.0,
                 span_end: float | None = None, text_source: str = "captions", **row) -> tuple[list[dict], int]:
    """Segment rows for utterances on one media file. `offset`/`span_end`: the file holds only
    [offset, span_end] of the original timeline (a downloaded span), so keep utterances inside it and
    shift them. Returns (rows, number of utterances outside the media)."""
    rows, outside = [], 0
    for u in utts:
        if span_end is not None and (u.start < offset - 1e-6 or u.end > span_end + slack):
            continue   # belongs to another span (or none): not counted as an error
        s, e = u.start - offset, u.end - offset
        try:
            s, e = fit_span(s, e, duration, slack, where)
        except RowError:
            outside += 1
            continue
        shifted = [(w, a - offset, b - offset) for w, a, b in u.words] if u.words else None
        words = Utterance(s, e, u.text, shifted).words_json()
        rows.append(segment_row(start=s, end=e, text=u.text, words=words, speaker=u.speaker,
                                text_source=text_source, **row))
    return rows, outside


def read_folder(entry, manifest, ctx, memo: ProbeMemo) -> tuple[list[dict], list[Record]]:
    cfg = ctx.cfg.sources
    root = manifest.resolve(entry.path)
    prov = Provenance(license=manifest.license_of(entry))
    if not root.is_dir():
        return [], [failed(STAGE, entry.id, Reason.MISSING_FILE, f"clip folder {root} does not exist")]
    clips = sorted(p for p in root.glob(entry.pattern) if p.is_file())
    if not clips:
        return [], [failed(STAGE, entry.id, Reason.MISSING_FILE, f"no file in {root} matches {entry.pattern!r}")]
    rows, recs = [], []
    video_id = LocalVideoIds()
    for clip in tqdm(clips, desc=f"folder {entry.id}", unit="clip", leave=False, disable=len(clips) < 20):
        vid = video_id(clip, root)
        item = f"{entry.id}/{vid}"
        try:
            cap = find_sidecar(clip, cfg.youtube.caption_langs)
            if cap is None:   # the speech stage transcribes it (or skips it: speech.transcript captions)
                pr = memo.probe(clip)
                rows.append(placeholder_row(duration=pr["duration"], source_id=entry.id, source_kind="folder",
                                            video_id=vid, video_path=clip, video_hash=pr["hash"], prov=prov))
                recs.append(ok(STAGE, item, output=str(clip), n_segments=0, captions="",
                               note="no sidecar captions: text from the speech stage"))
                continue
            try:
                utts, fig = caption_utterances(cap, cfg.captions)
            except CaptionError as e:
                raise RowError(Reason.BAD_CAPTIONS, str(e)) from None
            if fig["n_cues"] == 0:
                if cap.stat().st_size and fig["n_bad_cues"] + fig["n_nonspeech"] == 0:
                    raise RowError(Reason.BAD_CAPTIONS, f"{cap}: no caption cue could be read")
                if fig["n_bad_cues"] and not fig["n_nonspeech"]:   # every cue unusable (e.g. ends before start)
                    raise RowError(Reason.BAD_CAPTIONS, f"{cap}: no usable cue ({fig['n_bad_cues']} with "
                                                        f"unusable timing)")
                raise RowError(Reason.EMPTY_TEXT, f"{cap}: no spoken text (cues: {fig['n_bad_cues']} unusable, "
                                                  f"{fig['n_nonspeech']} non-speech)", "skipped")
            pr = memo.probe(clip)
            new, outside = caption_rows(utts, duration=pr["duration"], slack=cfg.span_slack_s, where=str(cap),
                                        source_id=entry.id, source_kind="folder", video_id=vid, video_path=clip,
                                        video_hash=pr["hash"], prov=prov)
            fig["n_outside_media"] = outside
            if not new:
                reason = Reason.MEDIA_SPAN if outside else Reason.EMPTY_TEXT
                raise RowError(reason, f"{cap}: no utterance left ({outside} outside the {pr['duration']:.2f} s "
                                       f"media, {fig['n_short_dropped']} shorter than "
                                       f"{cfg.captions.min_duration_s:g} s)", "skipped")
            rows += new
            recs.append(ok(STAGE, item, output=str(clip), n_segments=len(new), captions=cap.name, **fig))
        except RowError as e:
            fn = skipped if e.status == "skipped" else failed
            recs.append(fn(STAGE, item, e.reason, e.detail))
    return rows, recs
