"""The assemble stage on real on-disk inputs: a segment table plus faces/expressions cache entries in the
exact formats of docs/ARCHITECTURE.md, built here (no other stage runs)."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline.formats.dataset import read_table
import yaml

from pipeline.atomic import save_npz, write_json
from pipeline.config import load_config
from pipeline.context import StageContext
from pipeline.records import Reason, Status
from pipeline.workspace import Workspace

ARKIT = ["jawOpen", "jawLeft", "mouthSmileLeft", "mouthSmileRight", "browInnerUp", "eyeBlinkLeft"] + \
        [f"bs{i:02d}" for i in range(46)]
assert len(ARKIT) == 52


def write_entries(ws: Workspace, sid: str, codes: np.ndarray, valid: np.ndarray | None = None, fps: float = 25.0,
                  code_space: str = "arkit52", dims: list[str] = ARKIT, box=(100, 60, 220, 200)) -> tuple[str, str]:
    """A faces entry (track.npz, quality.json) and an expressions entry (codes.npz, codes.json)."""
    n = codes.shape[0]
    valid = np.ones(n, bool) if valid is None else valid
    fd = ws.cache / "faces" / sid[:2] / sid
    cd = ws.cache / "expressions" / sid[:2] / sid
    t = np.arange(n) / fps
    save_npz(fd / "track.npz", t=t, box=np.tile(np.asarray(box, np.float32), (n, 1)),
             landmarks=np.zeros((n, 478, 3), np.float16), transform=np.tile(np.eye(4, dtype=np.float32), (n, 1, 1)),
             blendshapes=np.zeros((n, 52), np.float32), valid=valid, fps=np.float64(fps))
    write_json(fd / "quality.json", {"presence": float(valid.mean()), "median_face_px": 140.0, "n_tracks": 1,
                                     "yaw": {"mean": 3.5, "max": 12.0}, "policy": "strict", "track": [1, 2.5], "cuts": [],
                                     "per_frame": {"yaw": [None if not v else 1.5 for v in valid]}})
    save_npz(cd / "codes.npz", raw=codes, smooth=codes, valid=valid, t=t, fps=np.float64(fps))
    write_json(cd / "codes.json", {"code_space": code_space, "dims": dims, "backend": "mediapipe",
                                   "smoothing": {"kind": "savgol", "window": 5}, "versions": {"mediapipe": "1.2.2"}})
    return str(fd), str(cd)


def seg_row(sid: str, source: str, video: str, start: float, end: float, text: str, split: str = "",
            kind: str = "folder", video_path: str = "") -> dict:
    return {"segment_id": sid, "source_id": source, "source_kind": kind, "video_id": video,
            "video_path": video_path, "video_hash": f"hash-{source}-{video}", "start": start, "end": end,
            "text": text, "words": "", "speaker": "ann", "emotion": "joy" if kind == "meld" else "",
            "sentiment": "", "split": split, "url": f"https://example.org/{video}", "title": video,
            "uploader": "someone", "license": "CC-BY-4.0", "downloaded_at": "", "tool_versions": "{}"}


def smooth_codes(seed: int, n: int, D: int = 52) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    c = 0.5 + 0.3 * np.sin(t / (3 + rng.uniform(0, 5, D)) + rng.uniform(0, 6, D))
    c[:, 10] = 0.25  # one constant dimension: exercises the std floor
    return c.astype(np.float32)


# sample id -> expected reason for the bad rows of the world
BAD = {
    "bad-empty": Reason.EMPTY_TEXT, "bad-noletters": Reason.TEXT_NO_LETTERS, "bad-long": Reason.TEXT_TOO_LONG,
    "bad-short": Reason.TOO_FEW_FRAMES, "bad-toolong": Reason.TOO_MANY_FRAMES, "bad-invalid": Reason.LOW_VALID_RATIO,
    "bad-nan": Reason.NON_FINITE, "bad-range": Reason.OUT_OF_RANGE, "zz-dup": Reason.DUPLICATE,
    "bad-missing": Reason.MISSING_FILE,
}


def build_world(ws: Workspace, n_videos: int = 8, video_path: str = "") -> pd.DataFrame:
    """8 plain videos × 3 segments (hashed split), 6 MELD utterances (official split), and one bad row
    per filter, plus a row without codes (not assembled at all)."""
    rows = []
    k = 0
    for v in range(n_videos):
        for j in range(3):
            sid = f"v{v:02d}s{j}"
            n = 20 + 7 * ((v + j) % 5)
            fd, cd = write_entries(ws, sid, smooth_codes(k, n))
            rows.append({**seg_row(sid, "talk", f"vid{v:02d}", 2.0 * j, 2.0 * j + n / 25.0,
                                   f"Sentence {j} of video {v}, with ünïcode “quotes”…", video_path=video_path),
                         "faces_dir": fd, "codes_dir": cd})
            k += 1
    for i, split in enumerate(["train", "train", "dev", "test", "test", "train"]):
        sid = f"meld{i}"
        fd, cd = write_entries(ws, sid, smooth_codes(100 + i, 30))
        rows.append({**seg_row(sid, "meld", f"dia{i}_utt0", 0.0, 1.2, f"Oh my God {i}!", split, "meld"),
                     "faces_dir": fd, "codes_dir": cd})
    good = smooth_codes(999, 30)

    def bad(sid, text="A fine sentence.", codes=good, valid=None):
        fd, cd = write_entries(ws, sid, codes, valid)
        rows.append({**seg_row(sid, "talk", "vidbad", 50.0 + len(rows), 51.0 + len(rows), text),
                     "faces_dir": fd, "codes_dir": cd})

    bad("bad-empty", text="   ")
    bad("bad-noletters", text="?! ... 123")
    bad("bad-long", text=" ".join(["word"] * 70))
    bad("bad-short", codes=good[:5])
    bad("bad-toolong", codes=np.resize(good, (300, 52)))
    bad("bad-invalid", valid=np.arange(30) % 3 == 0)
    nan = good.copy()
    nan[4, 7] = np.nan
    bad("bad-nan", codes=nan)
    bad("bad-range", codes=good + 0.9)
    # a duplicate of v00s0: same video, text and span, another id (sorts after it)
    dup = dict(rows[0])
    dup["segment_id"] = "zz-dup"
    rows.append(dup)
    missing = dict(seg_row("bad-missing", "talk", "vidbad", 90.0, 91.0, "Codes went missing."),
                   faces_dir="", codes_dir=str(ws.cache / "expressions" / "no" / "such-entry"))
    rows.append(missing)
    rows.append({**seg_row("no-codes", "talk", "vidbad", 95.0, 96.0, "Upstream rejected me."),
                 "faces_dir": "", "codes_dir": ""})
    return pd.DataFrame(rows)


def make_ctx(root: Path, overrides=()) -> StageContext:
    ws = Workspace(root)
    cfg = load_config(None, ["assemble.thumbnails=false", *overrides])
    return StageContext(cfg=cfg, ws=ws, run_dir=ws.new_run_dir())


def build(root: Path, overrides=(), shuffle: int | None = None, extra_files=None, **world):
    from dataset.assemble import assemble

    ctx = make_ctx(root, overrides)
    segs = build_world(ctx.ws, **world)
    if shuffle is not None:
        segs = segs.sample(frac=1.0, random_state=shuffle).reset_index(drop=True)
    out, recs = assemble(segs, ctx, "demo", extra_files=extra_files)
    return out, recs, segs


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build(tmp_path_factory.mktemp("asm") / "ws")


def load_pkl(p: Path):
    with open(p, "rb") as f:
        return pickle.load(f)  # files we just wrote ourselves


def test_layout_records_and_parquet(built, tmp_path):
    out, recs, segs = built
    for s in ("train", "dev", "test"):
        texts, exps = load_pkl(out / f"{s}_stage1_text.pkl"), load_pkl(out / f"{s}_stage1_exps.pkl")
        assert isinstance(texts, list) and isinstance(exps, list) and len(texts) == len(exps) > 0
        assert all(isinstance(t, str) for t in texts)
        assert all(e.dtype == np.float32 and e.ndim == 2 and e.shape[1] == 52 for e in exps)
        # loadable by EmoAva environments on numpy 1.x: no numpy-2-only module names in the stream
        raw = (out / f"{s}_stage1_exps.pkl").read_bytes()
        assert b"numpy._core" not in raw and b"numpy.core.multiarray\n_reconstruct" in raw
    for f in ("stage1_mean.npy", "stage1_std.npy", "data/train.parquet", "dataset.json", "README.md", "report.html",
              "provenance/config.yaml", "provenance/run_summary.txt"):
        assert (out / f).is_file(), f
    # one record per sample with codes; every bad row rejected with its own reason, the rest ok
    by_id = {r.item_id: r for r in recs}
    assert "no-codes" not in by_id
    assert set(by_id) == set(segs["segment_id"]) - {"no-codes"}
    for sid, reason in BAD.items():
        assert by_id[sid].reason is reason, (sid, by_id[sid])
        assert by_id[sid].stage == "assemble" and by_id[sid].detail
    assert by_id["bad-missing"].status is Status.FAILED and "codes.npz" in by_id["bad-missing"].detail
    assert "frames" in by_id["bad-toolong"].detail and "253" in by_id["bad-toolong"].detail
    assert "v00s0" in by_id["zz-dup"].detail
    oks = {i for i, r in by_id.items() if r.ok}
    assert oks == {i for i in by_id if i not in BAD}

    df = read_table(out)
    assert set(df["sample_id"]) == oks
    info = json.loads((out / "dataset.json").read_text())
    assert info["D"] == 52 and info["code_space"] == "arkit52" and info["columns"] == list(df.columns)
    assert info["jaw_dims"] == [0, 1] and info["fps"] == 25.0
    assert sum(c["samples"] for c in info["counts"].values()) == len(df)
    for col in ("text", "codes", "n_frames", "fps", "source_id", "video_id", "url", "license", "speaker",
                "emotion", "extractor_versions", "face_presence", "face_yaw_max", "face_policy"):
        assert col in df.columns, col
    assert "video_path" not in df.columns and "codes_dir" not in df.columns
    # coverage: the share of each utterance's span its frames cover, right after the core columns
    cov = df["coverage"].to_numpy(float)
    assert ((cov > 0) & (cov <= 1)).all() and list(df.columns).index("coverage") == 9
    span = (df["end"] - df["start"]).to_numpy(float)
    np.testing.assert_allclose(cov, np.minimum(1, df["n_frames"] / df["fps"] / span), atol=1e-4)
    assert "## Coverage" in (out / "README.md").read_text()
    assert "hist_coverage.png" in (out / "report.html").read_text()
    row = df[df.sample_id == "v00s0"].iloc[0]
    codes = np.stack(row["codes"])
    assert codes.dtype == np.float32
    np.testing.assert_array_equal(codes, smooth_codes(0, 20))
    # parquet and pickles agree, split by split, in order
    for s in ("train", "dev", "test"):
        assert list(df[df.split == s]["text"]) == load_pkl(out / f"{s}_stage1_text.pkl")
    # the funnel in dataset.json counts each assemble reason
    funnel = {(r["stage"], r["reason"]): r["count"] for r in info["funnel"]}
    assert funnel[("assemble", "filter.duplicate")] == 1 and funnel[("assemble", "ok")] == len(df)

    # per-frame face series are real lists (list<double> with nulls), not JSON text
    assert isinstance(row["face_yaw_max"], float) and list(row["face_track"]) == [1.0, 2.5]
    assert str(pq.read_schema(out / "data/train.parquet").field("codes").type) == "list<element: list<element: float>>"
    assert pq.read_schema(out / "data/test.parquet") == pq.read_schema(out / "data/train.parquet")
    # no sample has a shot cut: the column still has its type (frame indices), not list<null>
    assert str(pq.read_schema(out / "data/train.parquet").field("face_cuts").type) == "list<element: int64>"

    import datasets
    # the folder loads through the card's `configs`: three splits, EmoAva's dev as validation
    dd = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf"))
    assert set(dd) == {"train", "validation", "test"}
    for hf, s in (("train", "train"), ("validation", "dev"), ("test", "test")):
        assert dd[hf].num_rows == (df.split == s).sum() > 0 and set(dd[hf]["split"]) == {s}
        assert dd[hf].column_names == list(df.columns)
    assert np.asarray(dd["train"][0]["codes"], np.float32).shape[1] == 52
    assert dd["train"].features["face_track"].feature.dtype == "float64"


def test_two_builds_are_identical(built, tmp_path):
    out1 = built[0]
    out2, _, _ = build(tmp_path / "ws2", shuffle=7)  # input order shuffled too
    for s in ("train", "dev", "test"):
        for kind in ("text", "exps"):
            f = f"{s}_stage1_{kind}.pkl"
            assert (out1 / f).read_bytes() == (out2 / f).read_bytes(), f
    for f in ("stage1_mean.npy", "stage1_std.npy"):
        assert (out1 / f).read_bytes() == (out2 / f).read_bytes()
    a, b = read_table(out1), read_table(out2)
    assert list(a.columns) == list(b.columns)
    for col in a.columns:
        if col == "codes":
            assert all(np.array_equal(np.stack(x), np.stack(y)) for x, y in zip(a[col], b[col]))
        else:
            pd.testing.assert_series_equal(a[col], b[col])


def test_mean_std_from_train_frames_only(built):
    out = built[0]
    df = read_table(out)
    frames = lambda part: np.concatenate([np.stack(c).astype(np.float64) for c in part["codes"]])  # noqa: E731
    tr, rest = frames(df[df.split == "train"]), frames(df)
    mean, std = np.load(out / "stage1_mean.npy"), np.load(out / "stage1_std.npy")
    assert mean.dtype == std.dtype == np.float32 and mean.shape == (52,)
    np.testing.assert_allclose(mean, tr.mean(0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(std, np.maximum(tr.std(0), 1e-4), rtol=1e-5, atol=1e-7)
    assert std[10] == np.float32(1e-4)  # the constant dim is floored
    assert not np.allclose(mean, rest.mean(0), atol=1e-6)  # all-frame statistics would differ
    # the train pickles hold exactly those frames
    exps = load_pkl(out / "train_stage1_exps.pkl")
    np.testing.assert_allclose(np.concatenate(exps).mean(0), mean, rtol=1e-5, atol=1e-6)


def test_splits_official_kept_and_videos_never_cross(built, tmp_path):
    out = built[0]
    df = read_table(out)
    per_video = df.groupby(["source_id", "video_id"])["split"].nunique()
    assert (per_video == 1).all()
    meld = df[df.source_id == "meld"].set_index("video_id")
    assert meld["split"].to_dict() == {f"dia{i}_utt0": s for i, s in
                                        enumerate(["train", "train", "dev", "test", "test", "train"])}
    assert set(meld["split_method"]) == {"official"}
    assert set(df[df.source_id == "talk"]["split_method"]) == {"hashed"}
    # adding videos never moves an existing one
    bigger, _, _ = build(tmp_path / "ws3", n_videos=30)
    big = read_table(bigger).groupby("video_id")["split"].first()
    small = df.groupby("video_id")["split"].first()
    assert (big[small.index] == small).all()
    assert set(big) == {"train", "dev", "test"}


def test_hashed_split_ratios():
    from dataset.assemble.splits import hashed_split

    got = [hashed_split("src", f"video{i}", [0.8, 0.1, 0.1]) for i in range(4000)]
    share = {s: got.count(s) / len(got) for s in ("train", "dev", "test")}
    assert abs(share["train"] - 0.8) < 0.03 and abs(share["dev"] - 0.1) < 0.02
    assert {hashed_split("src", f"video{i}", [1.0, 0.0, 0.0]) for i in range(200)} == {"train"}


def test_empty_train_is_flagged(tmp_path):
    from dataset.assemble import assemble

    ctx = make_ctx(tmp_path / "ws")
    rows = []
    for i in range(3):
        fd, cd = write_entries(ctx.ws, f"t{i}", smooth_codes(i, 20))
        rows.append({**seg_row(f"t{i}", "m", f"d{i}", 0, 1, "Only test here.", "test", "meld"),
                     "faces_dir": fd, "codes_dir": cd})
    out, _ = assemble(pd.DataFrame(rows), ctx, "onlytest")
    info = json.loads((out / "dataset.json").read_text())
    assert info["stats"]["basis"] == "all" and any("train split is empty" in w for w in info["warnings"])
    assert "train split is empty" in (out / "README.md").read_text()
    assert np.load(out / "stage1_std.npy").min() > 0


def test_mixed_code_spaces_and_bad_config_are_clear(tmp_path):
    from dataset.assemble import AssembleError, assemble
    from pipeline.config import ConfigError

    ctx = make_ctx(tmp_path / "ws")
    fd, cd = write_entries(ctx.ws, "a1", smooth_codes(1, 20))
    fd2, cd2 = write_entries(ctx.ws, "b1", np.zeros((20, 53), np.float32), code_space="flame53",
                             dims=[f"exp{i}" for i in range(50)] + ["jaw0", "jaw1", "jaw2"])
    segs = pd.DataFrame([{**seg_row("a1", "s", "v1", 0, 1, "Hello there."), "faces_dir": fd, "codes_dir": cd},
                         {**seg_row("b1", "s", "v2", 0, 1, "Hello again."), "faces_dir": fd2, "codes_dir": cd2}])
    with pytest.raises(AssembleError, match="mixed code spaces.*codes.json"):
        assemble(segs, ctx, "mixed")
    with pytest.raises(ConfigError, match="split_ratios"):
        load_config(None, ["assemble.split_ratios=[0.5,0.1,0.1]"])
    with pytest.raises(AssembleError, match="no 'codes_dir' column"):
        assemble(segs.drop(columns="codes_dir"), ctx, "nocodes")


def test_card_front_matter(built):
    out = built[0]
    text = (out / "README.md").read_text()
    assert text.startswith("---\n")
    fm = yaml.safe_load(text.split("---\n")[1])
    assert fm["license"] == "cc-by-4.0" and fm["language"] == ["en"] and fm["size_categories"] == ["n<1K"]
    assert fm["configs"][0]["data_files"] == [{"split": "train", "path": "data/train.parquet"},
                                              {"split": "validation", "path": "data/validation.parquet"},
                                              {"split": "test", "path": "data/test.parquet"}]
    assert fm["source_datasets"] == ["extended", "original"]   # MELD extended, the folder source original
    # a data-fields row for every column, with its Arrow type
    fields = text.split("## Data fields", 1)[1].split("\n## ", 1)[0]
    for col in read_table(out).columns:
        assert f"| `{col}` | `" in fields, col
    assert "| `face_per_frame_yaw` | `list<element: double>` | faces stage: per frame: head yaw" in fields
    for needle in ("assemble.max_frames", "Known limitations", "MELD", "Citation", "filter.too_many_frames"):
        assert needle in text, needle


def test_nothing_passing_still_writes_an_explained_dataset(tmp_path):
    # min_frames above max_frames (an assemble-only rerun may do this): every sample rejected, not an error
    out, recs, _ = build(tmp_path / "ws", overrides=["assemble.min_frames=100000"])
    info = json.loads((out / "dataset.json").read_text())
    assert info["total"]["samples"] == 0 and any("no sample passed" in w for w in info["warnings"])
    assert any("min_frames (100000) > assemble.max_frames" in w for w in info["warnings"])
    assert info["code_space"] == "arkit52" and info["D"] == 52
    assert sum(r.reason is Reason.TOO_FEW_FRAMES for r in recs) >= 20
    assert load_pkl(out / "train_stage1_text.pkl") == [] and (out / "report.html").is_file()
    assert len(read_table(out)) == 0
    assert "no sample passed" in (out / "README.md").read_text()


def test_speech_columns_reach_parquet_card_and_report(tmp_path):
    """The speech stage's columns: words as list<struct> with probabilities, the shift of aligned spans, the
    text source per sample; the card and the report say where texts and spans came from."""
    import json as _json

    import pyarrow.parquet as papq

    from dataset.assemble import assemble
    from pipeline.formats.dataset import DATA_FILES, column_doc, read_samples

    ctx = make_ctx(tmp_path)
    segs = build_world(ctx.ws)
    good = segs[~segs.segment_id.str.startswith(("bad", "zz"))].index
    segs["text_source"], segs["span_source"] = "captions", "given"
    for c in ("given_start", "given_end", "asr_confidence", "match"):
        segs[c] = float("nan")
    segs["given_start"], segs["given_end"] = segs["start"], segs["end"]
    segs["language"], segs["speech_model"], segs["speech_spans"], segs["audio_stream"] = "", "", "", -1
    a, b = good[0], good[1]   # one aligned (moved 0.4 s later), one transcribed
    segs.loc[a, ["span_source", "given_start", "given_end", "asr_confidence", "match"]] = \
        ["aligned", segs.loc[a, "start"] - 0.4, segs.loc[a, "end"] - 0.2, 0.9, 1.0]
    segs.loc[a, "words"] = _json.dumps([["Hello", segs.loc[a, "start"], segs.loc[a, "start"] + 0.3, 0.95],
                                        ["there", segs.loc[a, "start"] + 0.3, segs.loc[a, "start"] + 0.6, None]])
    segs.loc[b, ["text_source", "span_source", "given_start", "given_end", "asr_confidence"]] = \
        ["asr", "asr", float("nan"), float("nan"), 0.8]
    segs.loc[[a, b], ["language", "speech_model", "audio_stream"]] = ["en", "whisper base int8 cpu", 0]
    out, _ = assemble(segs, ctx, "demo")
    schema = papq.read_schema(out / DATA_FILES["train"])
    assert str(schema.field("words").type) == \
        "list<element: struct<word: string, start: double, end: double, probability: double>>"
    for f in schema:
        assert column_doc(f.name) != "additional per-sample value", f.name
    df = read_samples(out).set_index("sample_id")
    ra, rb = df.loc[segs.loc[a, "segment_id"]], df.loc[segs.loc[b, "segment_id"]]
    assert [w["word"] for w in ra.words] == ["Hello", "there"] and ra.words[0]["probability"] == 0.95
    assert ra.words[1]["probability"] is None
    assert ra.shift_start == pytest.approx(0.4) and ra.shift_end == pytest.approx(0.2) and ra.text_match == 1.0
    assert rb.text_source == "asr" and np.isnan(rb.shift_start) and rb.audio_stream == 0
    assert len(df[df.words.map(len) == 0]) == len(df) - 1   # the others had no word times
    card = (out / "README.md").read_text()
    assert "## Text and timing" in card and "Spans: given" in card and "aligned 1" in card and "asr 1" in card
    assert "median |shift| of 0.40 s at the start and 0.20 s at the end" in card
    report = (out / "report.html").read_text()
    assert "id=\"timing\"" in report and "+0.40 / +0.20" in report
