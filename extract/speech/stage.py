"""The speech stage: per video, hear it and decide every utterance's text and span.

Per source (manifest `transcript:`/`align:`, else `speech.*`), each video is planned (`plan`):

- **asr**: no text was given (a clip without captions), YouTube's automatic captions under
  `transcript: auto`, or `transcript: asr`: the whole audio is transcribed and cut into sentence-level
  utterances on the word times, by the same rules as caption cues (extract/captions.py `merge_cues`);
- **align**: given text (manual captions, corpus or table rows) with `align: auto`: each span's audio
  ± `align_slack_s` is transcribed and the given words are located in it (extract/speech/align.py). The
  span moves to where they are said; a text not heard there is `speech.misaligned`, a span without
  speech `speech.no_speech`;
- **given**: `align: off`: spans and text are kept as given, no audio is read (Build passes them through);
- **none**: no text and `transcript: captions`: the video is skipped (`input.no_captions`).

Audio is read on the video's own timeline (pipeline/media.py read_audio_stream: container start = 0,
late audio zero-padded, the audio stream chosen by language/default/silence). The entry's speech.json
(pipeline/formats/speech.py) holds one result per utterance; Build turns them into segment rows.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipeline.records import ItemError, Reason, Record, Status
from pipeline.stage import Stage, StageSetupError, check_deadline

STAGE = "speech"
CODE_VERSION = "1"
RATE = 16000
_MERGE_GAP_S = 1.0      # align windows closer than this are heard in one piece


def plan(text_source: str, transcript: str, align: str) -> str:
    """asr | align | given | none for a video whose given text came from `text_source`."""
    if transcript == "asr":
        return "asr"
    if text_source in ("none", ""):
        return "asr" if transcript == "auto" else "none"
    if text_source == "auto-captions" and transcript == "auto":
        return "asr"
    return "align" if align == "auto" else "given"


def _windows(segs, slack: float, duration: float) -> list[tuple[float, float]]:
    ws = sorted((max(0.0, float(s["start"]) - slack), min(duration, float(s["end"]) + slack)) for s in segs)
    out: list[list[float]] = []
    for a, b in ws:
        if b <= a:
            continue
        if out and a <= out[-1][1] + _MERGE_GAP_S:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _r(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 3)


class SpeechStage(Stage):
    """One video (its planned mode and given segments) -> speech.json with one result per utterance."""

    name, code_version, section = STAGE, CODE_VERSION, "speech"

    def item_id(self, item: dict) -> str:
        return f"{item['source_id']}/{item['video_id']}"

    def label(self, item: dict) -> str:
        return f"{self.item_id(item)} ({item['mode']}, {len(item['segments'])} given)"

    def key_inputs(self, item: dict, ctx) -> tuple:
        from extract.speech.models import SpeechModelError, model_hash, resolve

        try:
            folder, _, _ = resolve(ctx.cfg.speech.model)
        except SpeechModelError as e:
            raise StageSetupError(str(e)) from None
        given = [(f"{float(s['start']):.3f}", f"{float(s['end']):.3f}", s["text"]) for s in item["segments"]]
        cap = ctx.cfg.sources.captions
        return (item["video_hash"], item["mode"], given if item["mode"] == "align" else [], model_hash(folder),
                cap.max_gap_s, cap.max_duration_s, cap.min_duration_s, cap.sentence_end,
                list(ctx.cfg.media.audio_langs), ctx.cfg.media.audio_silence_db)

    def process(self, item: dict, ctx, out: Path) -> Record:
        from extract.speech import asr
        from extract.speech.models import SpeechModelError
        from pipeline.formats.speech import write_speech
        from pipeline.media import probe

        cfg = ctx.cfg.speech
        path = Path(item["video_path"])
        try:
            model = asr.load(cfg)
        except SpeechModelError as e:
            raise StageSetupError(str(e)) from None
        info = probe(path, timeout=ctx.cfg.media.probe_timeout_s)
        duration = info.duration
        base = {"model": model.label, "language": "", "language_prob": None, "audio_stream": -1,
                "duration": round(duration, 3), "heard": [], "speech": [], "utterances": []}
        mode = item["mode"]
        if not info.has_audio:
            if mode == "asr":
                return self._video_result(out, base, item, Reason.SPEECH_NO_AUDIO,
                                          f"{path}: no audio stream, nothing to transcribe")
            base["utterances"] = [_given(s, "no audio stream: span kept as given") for s in item["segments"]]
            return self._done(out, base, item, "no audio stream: every span kept as given")
        if mode == "asr" and duration > cfg.max_audio_s:
            return self._video_result(out, base, item, Reason.SPEECH_TOO_LONG,
                                      f"{path}: {duration:.0f} s ({duration / 3600:.2f} h) of audio, more than speech.max_audio_s "
                                      f"{cfg.max_audio_s:g} s: split it or raise the limit")
        pre: list[dict] = []
        if mode == "align":   # more words than anyone says in the span and its slack: not worth hearing
            segs = []
            for sg in item["segments"]:
                n, room = len(sg["text"].split()), float(sg["end"]) - float(sg["start"]) + 2 * cfg.align_slack_s
                if n > cfg.max_words_per_s * room:
                    pre.append(_rejected(sg, Reason.SPEECH_TEXT_TOO_LONG,
                                         f"{n} words for a {float(sg['end']) - float(sg['start']):.2f} s span: more "
                                         f"than speech.max_words_per_s {cfg.max_words_per_s:g} even with "
                                         f"± {cfg.align_slack_s:g} s"))
                else:
                    segs.append(sg)
            item = dict(item, segments=segs)
        chunks = [(0.0, duration)] if mode == "asr" else _windows(item["segments"], cfg.align_slack_s, duration)
        from extract.speech.vad import Loudness, speech_regions

        words, regions, streams, langs, loud = [], [], set(), [], Loudness()
        for c0, c1 in chunks:
            check_deadline()
            audio, k = _read(path, c0, c1, info)
            streams.add(k)
            loud.add(c0, audio)

            regions += speech_regions(audio, cfg, offset=c0)
            if not _regions_in(regions, c0, c1):
                continue          # no speech in this piece: Whisper would only hallucinate
            heard = asr.transcribe(audio, cfg, offset=c0)
            words += heard.words
            if heard.language:
                langs.append((heard.language, heard.language_prob, c1 - c0))
        base["heard"] = [[_r(a), _r(b)] for a, b in chunks]
        base["speech"] = [[_r(a), _r(b)] for a, b in regions]
        base["audio_stream"] = int(sorted(streams)[0]) if streams else -1
        if langs:
            lang, prob, _ = max(langs, key=lambda x: x[2])
            base["language"], base["language_prob"] = lang, round(prob, 3)
        if mode == "asr":
            return self._asr(out, base, item, words, regions, duration, ctx, loud)
        return self._align(out, base, item, words, regions, duration, cfg, pre, loud)

    # -- transcription
    def _asr(self, out, base, item, words, regions, duration, ctx, loud=None) -> Record:
        from extract.speech.utterances import heard_utterances

        cfg = ctx.cfg.speech
        path = item["video_path"]
        if not regions:
            return self._video_result(out, base, item, Reason.SPEECH_NO_SPEECH, f"{path}: no speech heard "
                                      f"(Silero VAD, threshold {cfg.vad_threshold:g})")
        if not words:
            return self._video_result(out, base, item, Reason.SPEECH_NO_SPEECH,
                                      f"{path}: speech-like sound in {len(regions)} region(s) but no word heard")
        lang, prob = base["language"], base["language_prob"] or 0.0
        if cfg.languages and lang and lang not in cfg.languages and prob >= cfg.min_language_prob:
            return self._video_result(out, base, item, Reason.SPEECH_LANGUAGE,
                                      f"{path}: spoken language detected as {lang!r} (p={prob:.2f}), not one of "
                                      f"speech.languages {cfg.languages}")
        utts, n_short = heard_utterances(words, regions, duration, ctx.cfg.sources.captions, cfg, loud)
        res = []
        for u in utts:
            u["segment_id"] = ""          # Build names it: stable_id(source, video, start, end)
            if u["asr_confidence"] < cfg.min_confidence:
                u.update(status="skipped", reason=Reason.SPEECH_LOW_CONFIDENCE.value,
                         detail=f"mean word probability {u['asr_confidence']:.2f} < speech.min_confidence "
                                f"{cfg.min_confidence:g}: {u['text'][:60]!r}")
            elif u["speech_share"] < cfg.min_speech_share:
                u.update(status="skipped", reason=Reason.SPEECH_NO_SPEECH.value,
                         detail=f"only {u['speech_share']:.0%} of the span is speech (VAD)")
            res.append(u)
        base["utterances"] = res
        base["n_short_dropped"] = n_short
        n_ok = sum(u["status"] == "ok" for u in res)
        return self._done(out, base, item, f"transcribed: {len(words)} words -> {n_ok} utterances "
                                           f"({len(res) - n_ok} rejected, {n_short} too short)")

    # -- alignment
    def _align(self, out, base, item, words, regions, duration, cfg, pre=(), loud=None) -> Record:
        from extract.speech.align import local_align, refine_edges, tokens
        from extract.speech.vad import speech_in, speech_share

        heard_words = [w[0] for w in words]
        h_toks, h_owner = tokens(heard_words)
        res = []
        segs = sorted(item["segments"], key=lambda s: (float(s["start"]), float(s["end"])))
        for s in segs:
            gs, ge = float(s["start"]), float(s["end"])
            lo_w, hi_w = max(0.0, gs - cfg.align_slack_s), min(duration, ge + cfg.align_slack_s)
            idx = [j for j, o in enumerate(h_owner) if lo_w <= 0.5 * (words[o][1] + words[o][2]) <= hi_w]
            given_words = s["text"].split()
            g_toks, g_owner = tokens(given_words)
            share = speech_share(regions, gs, ge)
            heard_text = " ".join(dict.fromkeys(heard_words[h_owner[j]] for j in idx))[:160]
            if not idx:
                why = (Reason.SPEECH_NO_SPEECH, f"no speech in the given span {gs:.2f}-{ge:.2f} s "
                                                f"({share:.0%} VAD speech)") if share < cfg.min_speech_share else \
                      (Reason.SPEECH_MISALIGNED, f"no word heard within {lo_w:.2f}-{hi_w:.2f} s")
                res.append(_rejected(s, *why, speech_spans=speech_in(regions, gs, ge)))
                continue
            sub = [h_toks[j] for j in idx]
            al = local_align(g_toks, sub, prefer=lambda j: abs(words[h_owner[idx[j]]][2] - ge))
            if al.share < cfg.min_match and share < cfg.min_speech_share:
                res.append(_rejected(s, Reason.SPEECH_NO_SPEECH,
                                     f"no speech in the given span {gs:.2f}-{ge:.2f} s ({share:.0%} VAD speech) and "
                                     f"{al.n_matched:g} of {al.n_given} given words heard around it; heard: "
                                     f"{heard_text!r}", match=round(al.share, 3)))
                continue
            if al.share < cfg.min_match:
                res.append(_rejected(s, Reason.SPEECH_MISALIGNED,
                                     f"{al.n_matched:g} of {al.n_given} given words heard within "
                                     f"{lo_w:.2f}-{hi_w:.2f} s (speech.min_match {cfg.min_match:g}); heard: "
                                     f"{heard_text!r}", match=round(al.share, 3)))
                continue
            j0, j1 = _complete_edges(al, sub, idx, h_owner, words)
            first, last = words[h_owner[idx[j0]]], words[h_owner[idx[j1]]]
            # each given row stands alone (rows may overlap, a wrong neighbour must not clip a right one):
            # the edges are bounded by the search window only
            start, end = refine_edges(first[1], last[2], loud, cfg.edge_pad_s, lo_w, hi_w)
            w_out = [[w, _r(min(max(a, start), end)), _r(min(max(b, start), end)), p] for w, a, b, p in
                     _given_word_times(given_words, g_owner, al.pairs, idx, h_owner, words)]
            probs = [words[h_owner[idx[j]]][3] for _, j in al.pairs]
            res.append({"segment_id": s["segment_id"], "status": "ok", "reason": Reason.OK.value, "detail": "",
                        "start": _r(start), "end": _r(end), "text": s["text"], "words": w_out,
                        "span_source": "aligned", "given_start": _r(gs), "given_end": _r(ge),
                        "asr_confidence": _r(float(np.mean(probs))), "match": round(al.share, 3),
                        "speech_spans": speech_in(regions, start, end)})
        res += list(pre)
        base["utterances"] = res
        n_ok = sum(u["status"] == "ok" for u in res)
        shifts = [abs(u["start"] - u["given_start"]) for u in res if u["status"] == "ok"]
        return self._done(out, base, item, f"aligned {n_ok} of {len(res)} given spans"
                          + (f" (median start shift {float(np.median(shifts)):.2f} s)" if shifts else ""))

    # -- results
    def _done(self, out, base, item, detail: str) -> Record:
        from pipeline.formats.speech import write_speech

        write_speech(out, base)
        utts = base["utterances"]
        figs = {"mode": item["mode"], "n_given": len(item["segments"]), "n_utterances": len(utts),
                "n_ok": sum(u["status"] == "ok" for u in utts), "language": base["language"],
                "audio_stream": base["audio_stream"], "model": base["model"],
                "speech_s": round(sum(b - a for a, b in base["speech"]), 2)}
        return Record(STAGE, self.item_id(item), Status.OK, Reason.OK, detail, figs, "")

    def _video_result(self, out, base, item, reason: Reason, detail: str) -> Record:
        """The whole video is rejected: one result for each given segment (or for the video)."""
        from pipeline.formats.speech import write_speech

        base["video_reason"], base["video_detail"] = reason.value, detail
        write_speech(out, base)
        return Record(STAGE, self.item_id(item), Status.SKIPPED, reason, detail,
                      {"mode": item["mode"], "n_given": len(item["segments"])}, "")


def _complete_edges(al, sub, idx, h_owner, words, max_pause: float = 0.6) -> tuple[int, int]:
    """The first and last heard token of an aligned span. A given word at either end that was heard
    differently ("was" heard as "with") is not in the local alignment; when the given text goes on
    past its last aligned word and heard words follow without a pause, the span takes as many of them
    as given words are left (likewise before the first), so the edge word is not cut off."""
    j0, j1 = al.pairs[0][1], al.pairs[-1][1]
    left, right = al.pairs[0][0], al.n_given - 1 - al.pairs[-1][0]
    t = lambda j: words[h_owner[idx[j]]]   # noqa: E731 - the heard word of token j
    while right > 0 and j1 + 1 < len(sub) and t(j1 + 1)[1] - t(j1)[2] <= max_pause:
        j1, right = j1 + 1, right - 1
    while left > 0 and j0 > 0 and t(j0)[1] - t(j0 - 1)[2] <= max_pause:
        j0, left = j0 - 1, left - 1
    return j0, j1


def _regions_in(regions, a, b) -> bool:
    return any(e > a and s < b for s, e in regions)


def _read(path: Path, start: float, end: float, info) -> tuple[np.ndarray, int]:
    from pipeline.media import read_audio_stream

    try:
        return read_audio_stream(path, start, end, rate=RATE, info=info)
    except ItemError:
        raise
    except MemoryError:
        raise ItemError(Reason.SPEECH_TOO_LONG, f"{path}: {end - start:.0f} s of audio do not fit in memory") from None


def _given(s: dict, detail: str = "") -> dict:
    return {"segment_id": s["segment_id"], "status": "ok", "reason": Reason.OK.value, "detail": detail,
            "start": _r(float(s["start"])), "end": _r(float(s["end"])), "text": s["text"], "words": None,
            "span_source": "given", "given_start": _r(float(s["start"])), "given_end": _r(float(s["end"])),
            "asr_confidence": None, "match": None, "speech_spans": []}


def _rejected(s: dict, reason: Reason, detail: str, **extra) -> dict:
    u = _given(s, detail)
    u.update(status="skipped", reason=reason.value, **extra)
    return u


def _given_word_times(given_words, g_owner, pairs, idx, h_owner, words) -> list:
    """[word, start, end, probability] per given word: the times of the heard word each was aligned to;
    a given word that was not heard gets the gap between its aligned neighbours (probability null)."""
    times: dict[int, list] = {}
    for gi, j in pairs:
        w = words[h_owner[idx[j]]]
        k = g_owner[gi]
        t = times.setdefault(k, [w[1], w[2], w[3]])
        t[0], t[1], t[2] = min(t[0], w[1]), max(t[1], w[2]), min(t[2], w[3])
    known = sorted(times)
    if not known:
        return []
    out = []
    for k, word in enumerate(given_words):
        if k in times:
            a, b, p = times[k]
            out.append([word, _r(a), _r(b), _r(p)])
        elif known[0] < k < known[-1]:
            prev = max(x for x in known if x < k)
            nxt = min(x for x in known if x > k)
            out.append([word, _r(times[prev][1]), _r(times[nxt][0]), None])
    return out


SPEECH = SpeechStage()

__all__ = ["STAGE", "CODE_VERSION", "SPEECH", "SpeechStage", "plan"]


# ------------------------------------------------------------------ results -> segment rows

# what the speech stage adds to the segment table (docs/ARCHITECTURE.md), with the value of a row it
# did not hear
SPEECH_COLUMNS = {"span_source": "given", "given_start": float("nan"), "given_end": float("nan"),
                  "asr_confidence": float("nan"), "match": float("nan"), "language": "", "speech_model": "",
                  "audio_stream": -1, "speech_spans": ""}
# a row's columns that belong to its video (an utterance made by transcription inherits them)
_VIDEO_COLUMNS = ("source_id", "source_kind", "video_id", "video_path", "video_hash", "split", "url", "title",
                  "uploader", "license", "downloaded_at", "tool_versions")


def given_rows(rows: list[dict], detail: str) -> tuple[list[dict], list[Record]]:
    """Rows kept as given without hearing them (align off; an audio-free video)."""
    out = [{**r, **SPEECH_COLUMNS, "given_start": float(r["start"]), "given_end": float(r["end"])} for r in rows]
    return out, [Record(STAGE, r["segment_id"], Status.OK, Reason.OK, detail, {"span_source": "given"}, "")
                 for r in rows]


def video_item(rows: list[dict], mode: str) -> dict:
    """The stage's item for one video's rows (all of one source and video) in a planned mode."""
    r0 = rows[0]
    segs = [] if mode == "asr" else [{"segment_id": r["segment_id"], "start": float(r["start"]),
                                      "end": float(r["end"]), "text": r["text"]} for r in rows]
    return {"source_id": r0["source_id"], "video_id": r0["video_id"], "video_path": r0["video_path"],
            "video_hash": r0["video_hash"], "mode": mode, "segments": segs}


def result_rows(rows: list[dict], item: dict, rec: Record) -> tuple[list[dict], list[Record]]:
    """One video's rows after the stage: its records, one per utterance (item id = segment id), and the
    rows of the ok ones. A failed or rejected video gives every given segment (or, transcribing, the
    video) its record."""
    from pipeline.formats.speech import read_speech
    from pipeline.hashing import stable_id

    vid_item = SPEECH.item_id(item)
    targets = [r["segment_id"] for r in rows] if item["mode"] == "align" else [vid_item]
    if rec.status is Status.FAILED or not rec.output:
        return [], [Record(STAGE, t, rec.status, rec.reason, rec.detail, {}, "") for t in targets]
    data = read_speech(rec.output)
    if "video_reason" in data:
        return [], [Record(STAGE, t, Status.SKIPPED, Reason(data["video_reason"]), data["video_detail"], {}, "")
                    for t in targets]
    by_id = {r["segment_id"]: r for r in rows}
    video = {c: rows[0][c] for c in _VIDEO_COLUMNS if c in rows[0]}
    out_rows, recs = [], []
    for u in data["utterances"]:
        if item["mode"] == "align":
            row = dict(by_id[u["segment_id"]])
        else:
            row = {c: "" for c in rows[0]} | video
            row["segment_id"] = stable_id(row["source_id"], row["video_id"], f"{u['start']:.3f}", f"{u['end']:.3f}")
            row["text_source"] = "asr"
        seg_id = row["segment_id"]
        figs = {"span_source": u["span_source"]}
        if u.get("given_start") is not None and u["status"] == "ok":
            figs.update(shift_start=round(u["start"] - u["given_start"], 3),
                        shift_end=round(u["end"] - u["given_end"], 3))
        for k in ("asr_confidence", "match"):
            if u.get(k) is not None:
                figs[k] = u[k]
        ok_ = u["status"] == "ok"
        detail = u.get("detail", "")
        if detail and not ok_:   # say which clip and span, as every record's detail does
            detail = f"{row['video_path']} {float(row['start']):.2f}-{float(row['end']):.2f} s: {detail}"
        recs.append(Record(STAGE, seg_id, Status.OK if ok_ else Status.SKIPPED, Reason(u["reason"]),
                           detail, figs, rec.output))
        if not ok_:
            continue
        from pipeline.formats.speech import words_json
        import json

        row.update(start=float(u["start"]), end=float(u["end"]), text=u["text"],
                   words=words_json(u["words"]) or row.get("words", ""),
                   span_source=u["span_source"], language=data.get("language", ""),
                   given_start=float("nan") if u["given_start"] is None else float(u["given_start"]),
                   given_end=float("nan") if u["given_end"] is None else float(u["given_end"]),
                   asr_confidence=float("nan") if u.get("asr_confidence") is None else float(u["asr_confidence"]),
                   match=float("nan") if u.get("match") is None else float(u["match"]),
                   speech_model=data.get("model", ""), audio_stream=int(data.get("audio_stream", -1)),
                   speech_spans=json.dumps(u.get("speech_spans") or []))
        out_rows.append(row)
    return out_rows, recs


__all__ += ["SPEECH_COLUMNS", "given_rows", "video_item", "result_rows"]


def speech_frame(rows: list[dict], columns: list[str]) -> "pd.DataFrame":
    """The segment table after the stage: the ingest columns then SPEECH_COLUMNS, typed, sorted as ingest's."""
    import pandas as pd

    cols = list(columns) + [c for c in SPEECH_COLUMNS if c not in columns]
    df = pd.DataFrame(rows, columns=cols)
    for c in cols:
        if c in ("start", "end") or isinstance(SPEECH_COLUMNS.get(c), float):
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
        elif c == "audio_stream":
            df[c] = pd.to_numeric(df[c], errors="coerce").fillna(-1).astype("int64")
        else:
            df[c] = df[c].astype("string").fillna("").astype(object)
    return df.sort_values(["source_id", "video_id", "start", "end", "segment_id"],
                          kind="mergesort").reset_index(drop=True)


__all__ += ["speech_frame"]
