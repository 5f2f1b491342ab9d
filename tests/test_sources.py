"""Local sources (MELD, MEmoR, generic table, folder) and the ingest stage on real small media files."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from stages import ingest_manifest, ingest_source
from extract.sources.common import SEGMENT_COLUMNS, RowError, check_url, parse_time
from pipeline.config import load_config
from pipeline.context import StageContext
from pipeline.hashing import stable_id
from pipeline.manifest import load_manifest
from pipeline.records import Reason


@pytest.fixture(scope="module")
def tiny_mp4(tmp_path_factory) -> Path:
    """A 3 s, 160×120, 10 fps H.264 clip made by ffmpeg's test source."""
    from pipeline.media import ffmpeg_exe

    p = tmp_path_factory.mktemp("media") / "tiny.mp4"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc=size=160x120:rate=10:duration=3", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    str(p)], check=True)
    return p


def _ctx(ws, tmp_path, *overrides):
    return StageContext(load_config(None, list(overrides)), ws, ws.new_run_dir())


def _manifest(tmp_path, sources, name="m"):
    p = tmp_path / "manifest.yaml"
    p.write_text(yaml.safe_dump({"name": name, "license": "CC-BY-4.0", "sources": sources}))
    return load_manifest(p)


def _by_item(recs):
    return {r.item_id: r for r in recs}


def test_parse_time_variants():
    assert parse_time("0:20:57,256", "x") == pytest.approx(1257.256)
    assert parse_time("00:20:57.256", "x") == pytest.approx(1257.256)
    assert parse_time("1:02:10,5", "x") == pytest.approx(3730.5)
    assert parse_time("20:57", "x") == pytest.approx(1257.0)
    assert parse_time("12,5", "x") == 12.5 and parse_time(3, "x") == 3.0
    with pytest.raises(RowError) as e:
        parse_time("soon", "t.csv row 4 field 'start'")
    assert e.value.reason is Reason.BAD_TIME and "row 4" in e.value.detail
    with pytest.raises(RowError):
        parse_time("0:61:00,000", "x")


def test_url_policy():
    assert "allow_file_urls" in check_url("file:///etc/passwd", False, False)
    assert check_url("file:///tmp/a.mp4", True, False) == ""
    assert "not http" in check_url("ftp://example.com/a.mp4", False, False)
    assert "private" in check_url("http://127.0.0.1:8000/a.mp4", False, False)
    assert "private" in check_url("http://10.1.2.3/a", False, False)
    assert "this machine" in check_url("http://localhost/a", False, False)
    assert check_url("http://127.0.0.1:8000/a.mp4", False, True) == ""
    assert check_url("https://93.184.216.34/watch", False, False) == ""
    # names that do not resolve are refused (".invalid" never resolves, RFC 2606)
    assert "does not resolve" in check_url("http://no-such-host.invalid/a", False, False)
    assert "does not resolve" in check_url("http://no-such-host.invalid/a", False, True)
    # one named private host:port may be allowed; its neighbours stay refused
    assert check_url("http://127.0.0.1:8000/a", False, False, ["127.0.0.1:8000"]) == ""
    assert "private" in check_url("http://127.0.0.1:8001/a", False, False, ["127.0.0.1:8000"])
    assert "private" in check_url("http://10.0.0.1:8000/a", False, False, ["127.0.0.1:8000"])
    assert "private" in check_url("http://100.64.0.1/a", False, False)   # carrier NAT space is not public


def test_redaction():
    from pipeline.redact import redact_obj, redact_text, redact_url

    assert redact_url("https://u:pw@h.example/v?v=abc&token=T1&Signature=S2") == \
        "https://REDACTED@h.example/v?v=abc&token=REDACTED&Signature=REDACTED"
    assert redact_url("https://www.youtube.com/watch?v=abc&list=PL1") == "https://www.youtube.com/watch?v=abc&list=PL1"
    assert redact_text("ERROR: http://a:b@h/x?sig=1 failed") == "ERROR: http://REDACTED@h/x?sig=REDACTED failed"
    assert redact_obj({"d": ["u:pw@h.example:80"], "n": 3}) == {"d": ["REDACTED@h.example:80"], "n": 3}


def _meld_tree(root: Path, clip: Path):
    (root / "train_splits").mkdir(parents=True)
    (root / "dev_splits_complete").mkdir()
    cols = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
    train = cols + "\n".join([
        '1,"Oh my God, you’re back!",Rachel,Surprise,positive,0,0,3,7,"0:00:20,256","0:00:21,840"',
        '2,"Well… I said ""maybe"".",Ross,neutral,neutral,0,1,3,7,00:00:22.003,00:00:23.600',
        '3,Never cut.,Joey,joy,positive,1,0,3,7,"00:16:14,017","00:16:15,917"',
        '4,Zero.,Joey,joy,positive,1,1,3,7,"00:16:20,000","00:16:20,000"',
        '5,Backwards.,Joey,joy,positive,1,2,3,7,"00:16:30,000","00:16:29,000"',
        '6,Way too long.,Joey,joy,positive,1,3,3,7,"00:16:30,000","00:19:29,000"',
        '7,   ,Joey,joy,positive,1,4,3,7,"00:16:30,000","00:16:31,000"',
        '8,Bad time.,Joey,joy,positive,1,5,3,7,half past,"00:16:31,000"',
        '9,Bad id.,Joey,joy,positive,x,5,3,7,"00:16:30,000","00:16:31,000"',
        '10,Broken clip.,Joey,joy,positive,2,0,3,7,"00:16:30,000","00:16:31,000"',
    ]) + "\n"
    # a stray cp1252 apostrophe (0x92) inside an otherwise UTF-8 file, as in the real MELD CSVs
    (root / "train_sent_emo.csv").write_bytes(train.encode("utf-8").replace("you’re".encode(), b"you\x92re"))
    (root / "dev_sent_emo.csv").write_text(cols + '1,“Seriously”?,Monica,anger,negative,0,0,3,7,"1:02:10,500","1:02:12,100"\n',
                                           encoding="utf-8")
    for name in ("dia0_utt0", "dia0_utt1", "dia1_utt1", "dia1_utt2", "dia1_utt3", "dia1_utt4", "dia1_utt5"):
        shutil.copy(clip, root / "train_splits" / f"{name}.mp4")
    (root / "train_splits" / "dia2_utt0.mp4").write_bytes(b"not a video at all")
    shutil.copy(clip, root / "dev_splits_complete" / "dia0_utt0.mp4")


def test_meld_quirks(tmp_path, workspace, tiny_mp4):
    _meld_tree(tmp_path / "MELD", tiny_mp4)
    m = _manifest(tmp_path, [{"id": "meld", "kind": "meld", "root": "MELD", "splits": ["train", "dev", "test"]}])
    ctx = _ctx(workspace, tmp_path)
    rows, recs = ingest_source(m.sources[0], m, ctx)
    r = _by_item(recs)
    assert r["meld/train/dia0_utt0"].ok and r["meld/train/dia0_utt1"].ok and r["meld/dev/dia0_utt0"].ok
    assert r["meld/train/dia1_utt0"].reason is Reason.MISSING_FILE and "dia1_utt0.mp4" in r["meld/train/dia1_utt0"].detail
    for k in ("dia1_utt1", "dia1_utt2", "dia1_utt3"):
        assert r[f"meld/train/{k}"].reason is Reason.BAD_TIME and r[f"meld/train/{k}"].status.value == "skipped"
    assert "30 s limit" in r["meld/train/dia1_utt3"].detail
    assert r["meld/train/dia1_utt4"].reason is Reason.EMPTY_TEXT
    assert r["meld/train/dia1_utt5"].reason is Reason.BAD_TIME and "StartTime" in r["meld/train/dia1_utt5"].detail
    assert r["meld/train/row9"].reason is Reason.BAD_ROW and "Dialogue_ID" in r["meld/train/row9"].detail
    assert r["meld/train/dia2_utt0"].reason is Reason.MEDIA_UNREADABLE
    assert r["meld/test"].reason is Reason.MISSING_FILE and "test_sent_emo.csv" in r["meld/test"].detail
    assert len(rows) == 3 and all(list(x) == SEGMENT_COLUMNS for x in rows)
    by_vid = {x["video_id"]: x for x in rows}
    a = by_vid["train_dia0_utt0"]
    # one utterance per clip: clip time, not the CSV's episode time
    assert a["start"] == 0.0 and a["end"] == pytest.approx(3.0, abs=0.05)
    assert (a["speaker"], a["emotion"], a["sentiment"], a["split"]) == ("Rachel", "surprise", "positive", "train")
    assert a["text"] == "Oh my God, you’re back!" and a["license"] == "CC-BY-4.0"
    assert a["segment_id"] == stable_id("meld", "train_dia0_utt0", "0.000", f"{a['end']:.3f}")
    assert by_vid["train_dia0_utt1"]["text"] == 'Well… I said "maybe".'
    assert by_vid["dev_dia0_utt0"]["split"] == "dev"
    assert (workspace.sources / "meld" / "probes.json").exists()   # probes memoised for the rerun
    rows2, recs2 = ingest_source(m.sources[0], m, ctx)
    assert rows2 == rows and [x.to_json() for x in recs2] == [x.to_json() for x in recs]


# MELD's CSV rows as the MELD.Raw tarball ships them (C1 controls standing for cp1252 punctuation,
# U+00A0) and as the repository's cleaned UTF-8 copy: both must give the same text
SHIPPED = ["You\x92re back\x85", "\x93Seriously\x94? \x96 yes \x97 no", "Oh\xa0my\x85 God"]
CLEAN = ["You’re back…", "“Seriously”? – yes — no", "Oh my… God"]


@pytest.mark.parametrize("texts", [SHIPPED, CLEAN], ids=["as-shipped", "clean-utf8"])
def test_meld_both_encodings(tmp_path, workspace, tiny_mp4, texts):
    root = tmp_path / "MELD"
    (root / "train_splits").mkdir(parents=True)
    cols = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
    lines = [f'{i + 1},"{t}",Rachel,joy,positive,0,{i},3,7,"0:00:20,256","0:00:21,840"' for i, t in enumerate(texts)]
    (root / "train_sent_emo.csv").write_text(cols + "\n".join(lines) + "\n", encoding="utf-8")
    for i in range(len(texts)):
        shutil.copy(tiny_mp4, root / "train_splits" / f"dia0_utt{i}.mp4")
    m = _manifest(tmp_path, [{"id": "meld", "kind": "meld", "root": "MELD", "splits": ["train"]}])
    rows, recs = ingest_source(m.sources[0], m, _ctx(workspace, tmp_path))
    assert all(r.ok for r in recs) and [x["text"] for x in rows] == CLEAN
    assert not any(0x80 <= ord(c) <= 0xA0 for x in rows for c in x["text"])


def test_huge_integer_rejects_only_its_row(tmp_path, workspace, tiny_mp4):
    """A 400-digit integer (and a 5000-digit one, past Python's int limit) in a JSONL row, a MEmoR
    entry or a MELD id fails that row alone."""
    big, huge = "9" * 400, "7" * 5000
    (tmp_path / "clips").mkdir()
    shutil.copy(tiny_mp4, tmp_path / "clips" / "a.mp4")
    (tmp_path / "t.jsonl").write_text("\n".join([
        '{"video": "clips/a.mp4", "start": 0.5, "end": 1.5, "text": "Good row."}',
        f'{{"video": "clips/a.mp4", "start": {big}, "end": 2.0, "text": "Huge start."}}',
        f'{{"video": "clips/a.mp4", "start": 0.1, "end": {huge}, "text": "Past the int limit."}}',
        '{"video": "clips/a.mp4", "start": 2.0, "end": 2.5, "text": "Also good."}']) + "\n")
    root = tmp_path / "memor"
    (root / "clips").mkdir(parents=True)
    shutil.copy(tiny_mp4, root / "clips" / "ok.mp4")
    shutil.copy(tiny_mp4, root / "clips" / "bad.mp4")
    (root / "data.json").write_text('{"ok": {"seg_start": 0.5, "seg_end": 2.0, "sentence": "Fine."}, '
                                    f'"bad": {{"seg_start": 0, "seg_end": {big}, "sentence": "Huge."}}, '
                                    f'"worse": {{"seg_start": {huge}, "seg_end": 1, "sentence": "Huger."}}}}')
    meld = tmp_path / "MELD"
    (meld / "train_splits").mkdir(parents=True)
    (meld / "train_sent_emo.csv").write_text(
        "Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,StartTime,EndTime\n"
        '"Fine.",Ross,joy,positive,0,0,"0:00:01,000","0:00:02,000"\n'
        f'"Huge id.",Ross,joy,positive,{big},0,"0:00:01,000","0:00:02,000"\n')
    shutil.copy(tiny_mp4, meld / "train_splits" / "dia0_utt0.mp4")
    m = _manifest(tmp_path, [{"id": "tab", "kind": "table", "path": "t.jsonl"},
                             {"id": "memor", "kind": "memor", "root": "memor"},
                             {"id": "meld", "kind": "meld", "root": "MELD", "splits": ["train"]}])
    ctx = _ctx(workspace, tmp_path)
    rows, recs = ingest_source(m.sources[0], m, ctx)
    r = _by_item(recs)
    assert [x["text"] for x in rows] == ["Good row.", "Also good."]
    assert r["tab/row2"].reason is Reason.BAD_TIME and "too large" in r["tab/row2"].detail and "t.jsonl row 2" in r["tab/row2"].detail
    assert r["tab/row3"].reason is Reason.BAD_TIME and "'end'" in r["tab/row3"].detail
    rows, recs = ingest_source(m.sources[1], m, ctx)
    r = _by_item(recs)
    assert [x["text"] for x in rows] == ["Fine."] and r["memor/ok"].ok
    assert not r["memor/bad"].ok and "seg_end" in r["memor/bad"].detail
    assert not r["memor/worse"].ok and "seg_start" in r["memor/worse"].detail
    rows, recs = ingest_source(m.sources[2], m, ctx)
    r = _by_item(recs)
    assert [x["text"] for x in rows] == ["Fine."]
    assert r["meld/train/row2"].reason is Reason.BAD_ROW and "Dialogue_ID" in r["meld/train/row2"].detail


def test_table_csv_jsonl_parquet(tmp_path, workspace, tiny_mp4):
    (tmp_path / "clips").mkdir()
    shutil.copy(tiny_mp4, tmp_path / "clips" / "a.mp4")
    csv = ("Video,Start,End,Text,Speaker,Emotion,Split\n"
           "clips/a.mp4,0.5,1.5,\"Hello, there.\",Ann,Joy,train\n"
           "clips/a.mp4,0:00:01,0:00:02.500,Second  line,Ann,,validation\n"
           "clips/a.mp4,1.0,1.0,Zero span,Ann,,train\n"
           "clips/a.mp4,2.0,9.0,Past the end,Ann,,train\n"
           "clips/missing.mp4,0,1,No file,Ann,,train\n"
           "clips/a.mp4,0,1,,Ann,,train\n"
           "clips/a.mp4,0,1,Bad split,Ann,,holdout\n"
           "clips/a.mp4,0.5,1.5,\"Hello, there.\",Ann,Joy,train\n"
           "ftp://example.com/v.mp4,0,1,Bad scheme,Ann,,train\n"
           "http://127.0.0.1:9/v.mp4,0,1,Private host,Ann,,train\n")
    (tmp_path / "t.csv").write_text(csv)
    jsonl = ('{"video_path": "clips/a.mp4", "start_time": 0.2, "end_time": 1.0, "utterance": "From JSONL."}\n'
             "not json\n"
             "[1, 2]\n"
             '{"video_path": "clips/a.mp4", "start_time": "x", "end_time": 1.0, "utterance": "Bad start."}\n')
    (tmp_path / "t.jsonl").write_text(jsonl)
    pd.DataFrame({"url": ["clips/a.mp4"], "start": [0.0], "end": [2.0], "text": ["From Parquet."],
                  "split": ["test"]}).to_parquet(tmp_path / "t.parquet")
    (tmp_path / "nocol.csv").write_text("video,start,text\nclips/a.mp4,0,hi\n")
    m = _manifest(tmp_path, [{"id": "csv", "kind": "table", "path": "t.csv"},
                             {"id": "jsonl", "kind": "table", "path": "t.jsonl"},
                             {"id": "pq", "kind": "table", "path": "t.parquet"},
                             {"id": "nocol", "kind": "table", "path": "nocol.csv"}])
    df, recs = ingest_manifest(m, _ctx(workspace, tmp_path))
    r = _by_item(recs)
    assert [r[f"csv/row{i}"].reason for i in range(1, 11)] == [
        Reason.OK, Reason.OK, Reason.BAD_TIME, Reason.MEDIA_SPAN, Reason.MISSING_FILE, Reason.EMPTY_TEXT,
        Reason.BAD_ROW, Reason.DUPLICATE_SOURCE, Reason.URL_REFUSED, Reason.URL_REFUSED]
    assert "t.csv row 7" in r["csv/row7"].detail and "'split'" in r["csv/row7"].detail
    assert "missing.mp4" in r["csv/row5"].detail and "t.csv row 5" in r["csv/row5"].detail
    assert r["jsonl/row1"].ok and r["jsonl/row4"].reason is Reason.BAD_TIME
    assert r["jsonl/t.jsonl line 2"].reason is Reason.BAD_ROW and r["jsonl/t.jsonl line 3"].reason is Reason.BAD_ROW
    assert r["pq/row1"].ok
    assert r["nocol"].reason is Reason.BAD_ROW and "'end'" in r["nocol"].detail
    assert list(df.columns) == SEGMENT_COLUMNS and len(df) == 4
    assert list(df["source_id"]) == ["csv", "csv", "jsonl", "pq"]
    c = df[df.source_id == "csv"]
    assert list(c["text"]) == ["Hello, there.", "Second line"] and list(c["split"]) == ["train", "dev"]
    assert list(c["start"]) == [0.5, 1.0] and c["emotion"].iloc[0] == "joy" and c["video_id"].iloc[0] == "clips/a"
    assert df[df.source_id == "pq"]["split"].iloc[0] == "test"


def test_memor_mapping_and_missing_field(tmp_path, workspace, tiny_mp4):
    root = tmp_path / "memor"
    (root / "clips").mkdir(parents=True)
    shutil.copy(tiny_mp4, root / "clips" / "S01E01_001.mp4")
    shutil.copy(tiny_mp4, root / "clips" / "S01E01_002.mp4")
    data = {"S01E01_001": {"seg_start": 0.5, "seg_end": 2.0, "start": 10, "speakers": ["sheldon"],
                           "on_character": ["sheldon", "penny"], "sentence": "Bazinga!", "emotion": ["joy"]},
            "S01E01_002": {"seg_start": 0.0, "seg_end": 1.0, "speakers": ["penny"], "emotion": "neutral"},
            "S01E01_003": {"seg_start": 0.0, "seg_end": 1.0, "sentence": "No clip.", "speakers": "leonard"}}
    (root / "data.json").write_text(json.dumps(data))
    m = _manifest(tmp_path, [{"id": "memor", "kind": "memor", "root": "memor"}])
    rows, recs = ingest_source(m.sources[0], m, _ctx(workspace, tmp_path))
    r = _by_item(recs)
    assert r["memor/S01E01_001"].ok
    d = r["memor/S01E01_002"].detail
    assert r["memor/S01E01_002"].reason is Reason.BAD_ROW and "'sentence'" in d and "memor_fields.text" in d
    assert r["memor/S01E01_003"].reason is Reason.MISSING_FILE
    assert len(rows) == 1 and rows[0]["speaker"] == "sheldon" and rows[0]["emotion"] == "joy"
    assert (rows[0]["start"], rows[0]["end"], rows[0]["text"]) == (0.5, 2.0, "Bazinga!")
    # an overridden mapping: the transcript lives under another name, times in frames (10 fps)
    data = {"S01E01_002": {"f0": 5, "f1": 25, "utterance": "Override works.", "who": "penny"}}
    (root / "data.json").write_text(json.dumps(data))
    ctx = _ctx(workspace, tmp_path, "sources.memor_fields={text: utterance, start: f0, end: f1, speaker: who}",
               "sources.memor.time_scale=0.1")
    rows, recs = ingest_source(m.sources[0], m, ctx)
    assert recs[0].ok and (rows[0]["start"], rows[0]["end"], rows[0]["speaker"]) == (0.5, 2.5, "penny")
    ctx = _ctx(workspace, tmp_path, "sources.memor_fields={transcript: x}")
    rows, recs = ingest_source(m.sources[0], m, ctx)
    assert rows == [] and recs[0].reason is Reason.BAD_ROW and "transcript" in recs[0].detail


def test_folder_captions_and_missing(tmp_path, workspace, tiny_mp4):
    f = tmp_path / "clips"
    f.mkdir()
    for n in ("a", "b", "c", "d", "e"):
        shutil.copy(tiny_mp4, f / f"{n}.mp4")
    (f / "a.en.vtt").write_text("WEBVTT\n\n00:00:00.200 --> 00:00:01.200\nFirst sentence.\n\n"
                                "00:00:01.300 --> 00:00:02.600\n<v Ann>Second one, &amp; more.\n\n"
                                "00:00:05.000 --> 00:00:06.000\nAfter the end.\n")
    (f / "b.srt").write_text("1\n00:00:00,500 --> 00:00:01,500\n[Music]\n")
    (f / "d.vtt").write_text("WEBVTT\n\n00:00:09.000 --> 00:00:10.000\nWay past the end.\n")
    (f / "e.vtt").write_text("this is not a caption file\nat all\n")
    m = _manifest(tmp_path, [{"id": "fold", "kind": "folder", "path": "clips"}])
    rows, recs = ingest_source(m.sources[0], m, _ctx(workspace, tmp_path))
    r = _by_item(recs)
    assert r["fold/a"].ok and r["fold/a"].figures["n_outside_media"] == 1
    assert r["fold/b"].reason is Reason.EMPTY_TEXT
    # no captions: one text-less placeholder row over the whole clip, for the speech stage to transcribe
    assert r["fold/c"].ok and r["fold/c"].figures["n_segments"] == 0
    assert r["fold/d"].reason is Reason.MEDIA_SPAN
    assert r["fold/e"].reason is Reason.BAD_CAPTIONS and "e.vtt" in r["fold/e"].detail
    assert [(x["text"], x["speaker"], x["text_source"]) for x in rows] == [
        ("First sentence.", "", "captions"), ("Second one, & more.", "Ann", "captions"), ("", "", "none")]
    assert rows[0]["video_id"] == "a" and rows[0]["downloaded_at"] == ""


def test_sample_manifest_end_to_end(sample_dir, tmp_path, workspace):
    """The generated sample: folder, table and MELD layouts through ingest_manifest."""
    m = _manifest(tmp_path, [{"id": "talk", "kind": "folder", "path": str(sample_dir / "folder")},
                             {"id": "tab", "kind": "table", "path": str(sample_dir / "table" / "table.csv")},
                             {"id": "meld", "kind": "meld", "root": str(sample_dir / "meld")},
                             {"id": "off", "kind": "folder", "path": "nowhere", "enabled": False}])
    df, recs = ingest_manifest(m, _ctx(workspace, tmp_path))
    idx = json.loads((sample_dir / "sample.json").read_text())
    assert set(df["source_id"]) == {"talk", "tab", "meld"}
    assert not df["segment_id"].duplicated().any()
    assert df.equals(df.sort_values(["source_id", "video_id", "start"], kind="mergesort").reset_index(drop=True))
    # every generated sentence of the folder clips comes back as an utterance
    folder_texts = {s["text"] for c in idx["clips"] if c["kind"] == "folder" for s in c["sentences"]}
    assert folder_texts <= set(df[df.source_id == "talk"]["text"])
    r = _by_item(recs)
    assert r["meld/train/dia1_utt0"].reason is Reason.MISSING_FILE
    assert r["meld/dev/dia0_utt1"].reason is Reason.BAD_TIME
    assert not any(x.item_id.startswith("off") for x in recs)
    assert (df["end"] > df["start"]).all() and (df["video_hash"].str.len() == 64).all()


def test_same_stem_different_extension_gets_distinct_ids(tmp_path, workspace, tiny_mp4):
    """x.mp4 + x.ts in one folder (issue 24): before, both were video 'x' with identical segment ids and
    segments_frame dropped the second file's segments without a record while both said ok."""
    from extract.ingest import segments_frame
    from pipeline.media import ffmpeg_exe

    f = tmp_path / "clips"
    f.mkdir()
    shutil.copy(tiny_mp4, f / "x.mp4")
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(tiny_mp4), "-c", "copy",
                    str(f / "x.ts")], check=True)
    shutil.copy(tiny_mp4, f / "y.mp4")                      # no twin: its id keeps the old form
    for n in ("x", "y"):
        (f / f"{n}.vtt").write_text("WEBVTT\n\n00:00:00.200 --> 00:00:01.200\nFirst sentence.\n")
    m = _manifest(tmp_path, [{"id": "fold", "kind": "folder", "path": "clips", "pattern": "*[4s]"}])   # .mp4 and .ts
    rows, recs = ingest_source(m.sources[0], m, _ctx(workspace, tmp_path))
    assert sorted(r.item_id for r in recs) == ["fold/x.mp4", "fold/x.ts", "fold/y"] and all(r.ok for r in recs)
    assert sorted(x["video_id"] for x in rows) == ["x.mp4", "x.ts", "y"]
    seg_recs: list = []
    df = segments_frame(rows, seg_recs)
    assert len(df) == 3 and df["segment_id"].is_unique and not seg_recs
    # a table naming both files: two rows, not one row and a 'duplicate'
    (f / "t.csv").write_text("video,start,end,text\nx.mp4,0.2,1.2,Hello there.\nx.ts,0.2,1.2,Hello there.\n")
    m = _manifest(tmp_path, [{"id": "tab", "kind": "table", "path": "clips/t.csv"}])
    rows, recs = ingest_source(m.sources[0], m, _ctx(workspace, tmp_path))
    assert all(r.ok for r in recs) and sorted(x["video_id"] for x in rows) == ["x.mp4", "x.ts"]


def test_segments_frame_never_drops_a_row_silently(tmp_path, workspace, tiny_mp4):
    from extract.ingest import segments_frame
    from extract.sources.common import segment_row

    a = segment_row(source_id="s", source_kind="folder", video_id="v", video_path=tiny_mp4, video_hash="h1",
                    start=0.2, end=1.2, text="Hello.")
    other = {**a, "video_path": "/else/v.ts", "video_hash": "h2", "text": "Another text."}   # same id, other row
    recs: list = []
    df = segments_frame([a, dict(a), other], recs)
    assert len(df) == 1 and [(r.status.value, r.reason) for r in recs] == [
        ("skipped", Reason.DUPLICATE_SOURCE), ("failed", Reason.ERROR)]
    assert "/else/v.ts" in recs[1].detail and str(tiny_mp4) in recs[1].detail
