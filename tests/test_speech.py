"""The speech stage on real recorded speech (the pocketsphinx sdist's LibriVox recordings, with their
reference word alignments): transcription, alignment of given spans, the media timeline it hears on,
and every kind of bad input ending with its own reason.

Clips are a grey picture with real speech as the audio (the face stage is not run here): three LibriVox
utterances with known gaps, so each utterance's true text and edges are known."""
from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.media import ffmpeg_exe
from pipeline.records import Reason

GAP_S, LEAD_S = 1.4, 0.6


def _ff(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def _wav(path: Path, audio: np.ndarray, rate: int = 16000) -> Path:
    import wave

    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def _video(dest: Path, wav: Path | None, seconds: float, *extra: str) -> Path:
    """A grey 160x120 picture of `seconds` with `wav` as its audio (none: no audio stream)."""
    args = ["-f", "lavfi", "-i", f"color=gray:s=160x120:r=25:d={seconds:.3f}"]
    if wav is not None:
        args += ["-i", str(wav), "-map", "0:v", "-map", "1:a", "-c:a", "aac", "-b:a", "96k"]
    _ff(*args, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", *extra, str(dest))
    return dest


def words_of(text: str) -> list[str]:
    from extract.speech.align import norm_tokens

    return [t for w in text.split() for t in norm_tokens(w)]


def wer(ref: str, hyp: str) -> float:
    """Word error rate after the alignment's normalisation (case, punctuation, hyphens, Mr./mister)."""
    r, h = words_of(ref), words_of(hyp)
    d = np.arange(len(h) + 1, dtype=float)
    for i in range(1, len(r) + 1):
        prev, d[0] = d.copy(), i
        for j in range(1, len(h) + 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r[i - 1] != h[j - 1]))
    return float(d[len(h)]) / max(1, len(r))


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """(folder, truth): talk.mp4 = three LibriVox utterances with GAP_S pauses after LEAD_S of silence;
    truth = [{text, start, end}] with edges from the reference word alignments."""
    from testdata.speech import PocketsphinxUnavailable, librivox, speech_track

    try:
        utts = librivox()
    except PocketsphinxUnavailable as e:   # no registry: CI has one, so this only skips on a cut-off machine
        pytest.skip(str(e))
    d = tmp_path_factory.mktemp("speech")
    chosen = [u for u in utts if u.duration < 8][:3]
    audio, truth = speech_track(chosen, gaps_s=GAP_S, lead_s=LEAD_S)
    _wav(d / "talk.wav", audio)
    (d / "clips").mkdir()
    _video(d / "clips" / "talk.mp4", d / "talk.wav", len(audio) / 16000)
    return d, truth


def _build(tmp_path: Path, sources: list[dict], *overrides: str, name: str = "sp", ws: Path | None = None):
    from wordsmile.build import Build

    m = tmp_path / f"{name}.yaml"
    m.write_text(yaml.safe_dump({"name": name, "license": "CC0-1.0", "sources": sources}))
    b = Build(m, ws or tmp_path / "ws", overrides=["orchestration.workers=1", *overrides])
    res = b.run(["ingest", "speech"])
    df, recs = b.load_state("speech")
    return df, [r for r in recs if r.stage == "speech"], res


def test_a_clip_without_captions_is_transcribed_into_utterances_on_the_word_times(speech, tmp_path):
    d, truth = speech
    df, recs, res = _build(tmp_path, [{"id": "talk", "kind": "folder", "path": str(d / "clips")}])
    assert len(df) >= len(truth) and set(df.text_source) == {"asr"} and set(df.span_source) == {"asr"}
    for t in truth:   # every true utterance: heard once, its words right, its edges where they are said
        mine = df[(df.end > t["start"]) & (df.start < t["end"])]
        assert (mine.start >= t["start"] - 0.3).all() and (mine.end <= t["end"] + 0.3).all(), (t, mine)
        assert wer(t["text"], " ".join(mine.text)) <= 0.1, (t["text"], list(mine.text))
        assert abs(mine.start.min() - t["start"]) <= 0.15 and abs(mine.end.max() - t["end"]) <= 0.2
    row = df.iloc[0]
    words = json.loads(row.words)
    assert len(words[0]) == 4 and 0 < words[0][3] <= 1 and row.start <= words[0][1] < words[-1][2] <= row.end
    assert row.language == "en" and row.asr_confidence > 0.6 and row.speech_model.startswith("whisper base")
    spans = json.loads(row.speech_spans)
    assert spans and all(row.start <= a < b <= row.end for a, b in spans)
    # the ids of transcribed utterances follow the ingest rule, so a rerun names them the same
    t0 = time.monotonic()
    df2, _, res2 = _build(tmp_path, [{"id": "talk", "kind": "folder", "path": str(d / "clips")}])
    assert res2.cache["speech"] == {"hits": 1, "misses": 0} and list(df2.segment_id) == list(df.segment_id)
    assert time.monotonic() - t0 < 20


def _table(d: Path, rows: list[tuple]) -> Path:
    p = d / f"table{len(list(d.glob('table*.csv')))}.csv"
    lines = ["video,start,end,text"] + [f"{v},{s:.3f},{e:.3f},\"{t}\"" for v, s, e, t in rows]
    p.write_text("\n".join(lines) + "\n")
    return p


def test_given_spans_move_to_their_words_and_wrong_text_is_rejected(speech, tmp_path):
    """MELD's spans are crawled from subtitles and off by up to seconds: a span 1 s late is snapped back
    to its words with the neighbour's speech inside the search window; a text that is not said there
    (the neighbour's line, another sentence) is speech.misaligned with the evidence."""
    d, truth = speech
    clip = d / "clips" / "talk.mp4"
    a, b, c = truth
    rows = [(clip, b["start"] + 1.0, b["end"] + 1.0, b["text"]),                   # 1 s late
            (clip, a["start"] - 0.8, a["end"] - 0.6, a["text"]),                   # early, clipped at 0
            (clip, c["start"], c["end"], "I never said anything of the kind to anybody here."),   # wrong text
            (clip, c["start"] + 0.3, c["end"] + 0.2, b["text"])]                   # the neighbour's line
    df, recs, _ = _build(tmp_path, [{"id": "tab", "kind": "table", "path": str(_table(tmp_path, rows))}])
    by = {r.item_id: r for r in recs}
    assert len(recs) == 4 and len(df) == 2
    for t in (a, b):
        row = df[df.text == t["text"]].iloc[0]
        assert row.span_source == "aligned" and row.match >= 0.9
        assert abs(row.start - t["start"]) <= 0.15 and abs(row.end - t["end"]) <= 0.2, (row.start, row.end, t)
        rec = by[row.segment_id]
        assert abs(rec.figures["shift_start"] - (row.start - row.given_start)) < 1e-6
    late = df[df.text == b["text"]].iloc[0]
    assert late.given_start == pytest.approx(b["start"] + 1.0, abs=1e-3) and late.start < late.given_start - 0.8
    bad = [r for r in recs if not r.ok]
    assert {r.reason for r in bad} == {Reason.SPEECH_MISALIGNED}
    assert all("heard:" in r.detail and "given words heard" in r.detail for r in bad)


def test_policies_captions_only_asr_and_align_off(speech, tmp_path):
    d, truth = speech
    folder = {"id": "talk", "kind": "folder", "path": str(d / "clips")}
    # transcript: captions -> a clip without captions is skipped for that reason, at the speech stage
    df, recs, _ = _build(tmp_path, [dict(folder, transcript="captions")], name="capt")
    assert df.empty and [r.reason for r in recs] == [Reason.NO_CAPTIONS] and "talk" in recs[0].item_id
    # align: off -> a given span is kept as it is, without hearing it
    rows = [(d / "clips" / "talk.mp4", truth[1]["start"] + 1.0, truth[1]["end"] + 1.0, truth[1]["text"])]
    tab = {"id": "tab", "kind": "table", "path": str(_table(tmp_path, rows))}
    df, recs, res = _build(tmp_path, [dict(tab, align="off")], name="off")
    assert df.span_source.tolist() == ["given"] and df.start.iloc[0] == pytest.approx(truth[1]["start"] + 1.0)
    assert "speech" not in res.cache
    # transcript: asr (config-wide) -> the given text is ignored and the audio transcribed
    df, recs, _ = _build(tmp_path, [tab], "speech.transcript=asr", name="asr")
    assert set(df.text_source) == {"asr"} and len(df) >= 3


def test_speech_is_heard_on_the_video_timeline(speech, tmp_path):
    """MPEG-TS (PTS from 3600 s), audio that starts 2 s late and a silent default track before the speech
    track: each is heard where the picture says, so the utterances are those of the plain MP4 (+2 s for
    the late audio, whose speech really is 2 s later)."""
    d, truth = speech
    v = tmp_path / "v"
    v.mkdir()
    src = d / "clips" / "talk.mp4"
    _ff("-i", str(src), "-c", "copy", "-output_ts_offset", "3600", str(v / "broadcast.ts"))
    dur = truth[-1]["end"] + 1.0
    # the picture runs 2 s longer than the speech track, which starts 2 s into it
    pic = _video(tmp_path / "pic.mp4", None, dur + 2.5)
    _ff("-i", str(pic), "-itsoffset", "2.0", "-i", str(d / "talk.wav"), "-map", "0:v", "-map", "1:a", "-c:v", "copy",
        "-c:a", "aac", str(v / "late.mp4"))
    _ff("-i", str(src), "-f", "lavfi", "-i", f"anullsrc=r=16000:cl=mono:d={dur:.2f}", "-map", "0:v", "-map", "1:a",
        "-map", "0:a", "-c:v", "copy", "-c:a", "aac", "-disposition:a:0", "default", "-disposition:a:1", "0",
        "-metadata:s:a:0", "language=deu", "-metadata:s:a:1", "language=eng", str(v / "two.mp4"))
    df, recs, _ = _build(tmp_path, [{"id": "v", "kind": "folder", "path": str(v), "pattern": "*.*"}])
    assert all(r.ok for r in recs)
    firsts = {vid: g.sort_values("start") for vid, g in df.groupby("video_id")}
    for vid, shift in (("broadcast", 0.0), ("late", 2.0), ("two", 0.0)):
        g = firsts[vid]
        for t in truth:
            mine = g[(g.end > t["start"] + shift) & (g.start < t["end"] + shift)]
            assert len(mine) and abs(mine.start.min() - (t["start"] + shift)) <= 0.15, (vid, t, mine.start.tolist())
            assert wer(t["text"], " ".join(mine.text)) <= 0.1
    assert set(firsts["two"].audio_stream) == {1}   # the speech track, not the silent default one


def test_bad_audio_ends_with_its_own_reason(speech, tmp_path):
    d, truth = speech
    bad = tmp_path / "bad"
    bad.mkdir()
    _video(bad / "no_audio.mp4", None, 3.0)
    _video(bad / "silence.mp4", _wav(tmp_path / "sil.wav", np.zeros(16000 * 4, np.float32)), 4.0)
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 6) / 16000
    chord = sum(np.sin(2 * np.pi * f * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t + f)) for f in (220, 277, 330, 440))
    music = 0.12 * chord / 4 + 0.01 * rng.standard_normal(len(t))
    _video(bad / "music.mp4", _wav(tmp_path / "music.wav", music.astype(np.float32)), 6.0)
    good = (d / "clips" / "talk.mp4").read_bytes()
    (bad / "corrupt.mp4").write_bytes(good[: len(good) // 3])       # cut mid-file: the moov atom is gone
    long_ = _video(bad / "long.mp4", d / "talk.wav", truth[-1]["end"] + 0.5)
    df, recs, res = _build(tmp_path, [{"id": "bad", "kind": "folder", "path": str(bad)}], "speech.max_audio_s=8")
    by = {r.item_id.split("/")[-1]: r for r in recs if "/" in r.item_id}
    assert by["no_audio"].reason is Reason.SPEECH_NO_AUDIO
    assert by["silence"].reason is Reason.SPEECH_NO_SPEECH
    assert by["long"].reason is Reason.SPEECH_TOO_LONG and f"{long_}" in by["long"].detail
    # music: no utterance may come out of it (no speech found, or whatever was heard rejected)
    assert "music" not in set(df.video_id)
    assert by.get("music") is None or by["music"].reason in (Reason.SPEECH_NO_SPEECH, Reason.SPEECH_LOW_CONFIDENCE)
    ingest = {r.item_id: r for r in res.records if r.stage == "ingest"}
    assert ingest["bad/corrupt"].reason is Reason.MEDIA_UNREADABLE
    assert df.empty
    # a transcript far longer than its span, a language not accepted, a span of silence
    clip = d / "clips" / "talk.mp4"
    rows = [(clip, truth[0]["start"], truth[0]["start"] + 0.5, " ".join(["word"] * 40)),
            (clip, 0.0, LEAD_S, "Nothing is said here at all."),
            (clip, truth[1]["start"], truth[1]["end"], truth[1]["text"])]
    df, recs, _ = _build(tmp_path, [{"id": "tab", "kind": "table", "path": str(_table(tmp_path, rows))}], name="t2")
    reasons = sorted(r.reason.value for r in recs)
    assert reasons == sorted(["speech.text_too_long", "speech.no_speech", "ok"]), [(r.reason, r.detail) for r in recs]
    df, recs, _ = _build(tmp_path, [{"id": "talk", "kind": "folder", "path": str(d / "clips")}],
                         "speech.languages=[fr]", name="fr")
    assert [r.reason for r in recs] == [Reason.SPEECH_LANGUAGE] and "'en'" in recs[0].detail


def test_whisper_models_are_pinned_verified_and_never_fetched_at_run_time(tmp_path, monkeypatch):
    from extract.speech import models

    rows = {r["name"]: r for r in models.status_rows()}
    assert rows["whisper base"]["installed"] and rows["whisper tiny.en"]["installed"], rows
    # a copy with one flipped byte is refused by its digest
    src = models.model_root() / "tiny.en"
    bad = tmp_path / "tiny.en"
    bad.mkdir()
    for f in models.FILES:
        (bad / f).write_bytes((src / f).read_bytes())
    cfg = bytearray((bad / "config.json").read_bytes())
    cfg[5] ^= 1
    (bad / "config.json").write_bytes(bytes(cfg))
    why = models.verify(models.SPECS["tiny.en"], bad)
    assert why and "config.json" in why and "SHA-256" in why
    # a local CTranslate2 folder is accepted; a hub name or a folder that is not one is not
    folder, label, en = models.resolve(str(src))
    assert folder == src.resolve() and en
    with pytest.raises(models.SpeechModelError, match="neither an installed model"):
        models.resolve("openai/whisper-large-v3")
    (tmp_path / "empty").mkdir()
    with pytest.raises(models.SpeechModelError, match="not a CTranslate2"):
        models.resolve(str(tmp_path / "empty"))
    monkeypatch.setenv("WORDSMILE_MODELS", str(tmp_path / "nowhere"))
    with pytest.raises(models.SpeechModelError, match="wordsmile models install"):
        models.resolve("base")


def test_local_alignment_ignores_common_words_across_a_gap():
    from extract.speech.align import local_align, tokens

    given, _ = tokens("I know what you mean.".split())
    heard, _ = tokens("I think so. Well, I know what you mean, right?".split())
    al = local_align(given, heard)
    assert al.share == 1.0 and [j for _, j in al.pairs] == [4, 5, 6, 7, 8]
    other, _ = tokens("Completely different words were said".split())
    assert local_align(given, other).share == 0.0
    # a near spelling counts half; case, punctuation, hyphens and Mr./mister do not matter
    g, _ = tokens("Mr. Dashwood was an ill disposed colour".split())
    h, _ = tokens("mister dashwood was an ill-disposed color".split())
    assert local_align(g, h).share == pytest.approx((6 + 0.5) / 7)
    assert re.fullmatch(r"[a-z']+", "".join(h))
