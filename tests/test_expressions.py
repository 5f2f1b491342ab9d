"""Expression codes: arkit52 backend, temporal processing, the linear rig and the stage (arkit52).

flame53/EMOCA tests are in test_emoca.py."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pipeline.stage import read_stats
from stages import run_expressions, run_faces
from hypothesis import given, settings
from hypothesis import strategies as st

from extract.expressions import get_backend
from pipeline.codespaces import BLENDSHAPE_NAMES
from extract.expressions import temporal
from extract.expressions.rig import ALIGN_IDX, Rig, fit_rig
from pipeline.cache import StageCache
from pipeline.config import load_config
from pipeline.context import StageContext
from pipeline.records import Reason, ok
from pipeline.workspace import Workspace


# ----------------------------------------------------------------------------- helpers

def synthetic_face_track(n: int, fps: float = 25.0, seed: int = 0, basis_seed: int = 7):
    """A track in the faces stage's format whose landmarks really are a linear blendshape rig under a
    moving similarity pose, plus noise: (track dict, ground-truth neutral, ground-truth basis)."""
    rng = np.random.default_rng(seed)
    brng = np.random.default_rng(basis_seed)  # one identity/rig shared by all segments
    neutral = brng.normal(size=(478, 3)) * np.array([60.0, 75.0, 30.0])
    basis = brng.normal(size=(52, 478, 3)) * 6.0
    basis[:, ALIGN_IDX] *= 0.02                       # expressions barely move the rigid points
    bs = rng.uniform(0, 1, size=(n, 52)) ** 3          # sparse-ish activations in [0, 1]
    bs[:, 0] = rng.uniform(0, 0.05, n)
    yaw = np.radians(rng.uniform(-15, 15, n))
    pitch = np.radians(rng.uniform(-10, 10, n))
    lms, trs = [], []
    for i in range(n):
        cy, sy, cp, sp = np.cos(yaw[i]), np.sin(yaw[i]), np.cos(pitch[i]), np.sin(pitch[i])
        R = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]) @ np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
        shape = neutral + np.einsum("k,kpc->pc", bs[i], basis)
        s = rng.uniform(0.8, 1.2)
        lms.append(s * shape @ R.T + np.array([320 + 20 * np.sin(i / 9), 240, 0]) + rng.normal(0, 0.3, (478, 3)))
        T = np.eye(4)
        T[:3, :3] = R * 1.1
        trs.append(T)
    lms = np.array(lms)
    lo, hi = lms[..., :2].min(axis=1), lms[..., :2].max(axis=1)
    valid = np.ones(n, bool)
    track = {"t": np.arange(n) / fps, "box": np.concatenate([lo, hi], axis=1).astype(np.float32),
             "landmarks": lms.astype(np.float16), "transform": np.array(trs, np.float32),
             "blendshapes": bs.astype(np.float32), "valid": valid, "fps": np.float64(fps)}
    return track, neutral, basis


def write_faces_entry(ws: Workspace, key: str, track: dict, crops: np.ndarray | None = None) -> Path:
    """A faces-stage cache entry in the exact on-disk format (track.npz, quality.json, record.json)."""
    cache = StageCache(ws, "faces", "test", {})
    with cache.put(key) as tmp:
        with open(tmp / "track.npz", "wb") as f:
            np.savez(f, **track)
        if crops is not None:
            np.save(tmp / "crops.npy", crops)
        (tmp / "quality.json").write_text(json.dumps({"presence": 1.0}))
        (tmp / "record.json").write_text(json.dumps(ok("faces", key, output="x").to_json()))
    return cache.path(key)


@pytest.fixture
def ctx(tmp_path):
    def make(*overrides):
        ws = Workspace(tmp_path / "ws")
        return StageContext(cfg=load_config(None, list(overrides)), ws=ws, run_dir=ws.new_run_dir())
    return make


# ----------------------------------------------------------------------------- backends

def test_backend_registry_and_arkit_dims():
    cfg = load_config().expressions
    b = get_backend(None, cfg)
    assert (b.name, b.code_space, b.D) == ("arkit52", "arkit52", 52)
    assert b.dims[:4] == ["_neutral", "browDownLeft", "browDownRight", "browInnerUp"]
    assert [b.dims[i] for i in b.jaw_dims] == ["jawForward", "jawLeft", "jawOpen", "jawRight"]
    assert "mediapipe" in b.versions()
    with pytest.raises(ValueError, match="expressions.backend"):
        get_backend("nope", cfg)


def test_arkit_codes_are_the_face_pass_blendshapes():
    track, _, _ = synthetic_face_track(20)
    track["valid"][[3, 4]] = False
    out = get_backend("arkit52", load_config().expressions).encode(track)
    v = track["valid"]
    np.testing.assert_array_equal(out.codes[v], track["blendshapes"][v])
    assert np.isnan(out.codes[~v]).all() and (out.valid == v).all()


def test_flame53_without_emoca_path_names_the_setting():
    from extract.expressions import ExpressionsSetupError

    cfg = load_config(None, ["expressions.backend=flame53"]).expressions
    with pytest.raises(ExpressionsSetupError, match=r"expressions\.emoca_path.*docs/expressions\.md"):
        get_backend(None, cfg)


# ----------------------------------------------------------------------------- temporal

def test_resample_linear_signal_is_exact_and_masks_propagate():
    t = np.arange(31) / 30.0                       # 1 s at 30 fps
    x = np.stack([2 * t + 1, -t], axis=1).astype(np.float32)
    valid = np.ones(31, bool)
    valid[15] = False
    t_out, y, ok_ = temporal.resample(t, x, valid, 25.0)
    assert len(t_out) == 26 and np.allclose(np.diff(t_out), 0.04)
    np.testing.assert_allclose(y[ok_], np.stack([2 * t_out + 1, -t_out], axis=1)[ok_], atol=1e-5)
    # the output frames whose neighbours include source frame 15 (t = 0.5 s) are invalid, and only they
    bad = np.flatnonzero(~ok_)
    assert bad.tolist() == [12, 13] and np.isnan(y[bad]).all()   # 0.48 s and 0.52 s


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=60), st.integers(0, 6))
def test_gap_filling_never_invents_beyond_n(mask, max_gap):
    valid = np.array(mask)
    vals = np.where(valid[:, None], np.arange(len(valid), dtype=np.float32)[:, None], np.nan)
    out, filled = temporal.fill_gaps(vals, valid, max_gap)
    assert not (filled & valid).any()
    for s, e in temporal.runs(~valid):
        interior = s > 0 and e < len(valid)
        expect = interior and (e - s) <= max_gap
        assert filled[s:e].all() == expect and filled[s:e].any() == expect
    usable = valid | filled
    assert np.isfinite(out[usable]).all() and np.isnan(out[~usable]).all()
    # interpolation between index-valued neighbours reproduces the index
    np.testing.assert_allclose(out[filled, 0], np.flatnonzero(filled), atol=1e-4)


@pytest.mark.parametrize("method", ["none", "savgol", "one_euro"])
def test_smoothing_keeps_length_and_mask(method):
    rng = np.random.default_rng(1)
    n = 120
    t = np.arange(n) / 25.0
    clean = np.stack([np.sin(2 * np.pi * 0.7 * t), np.cos(2 * np.pi * 0.3 * t)], axis=1)
    noisy = (clean + rng.normal(0, 0.1, clean.shape)).astype(np.float32)
    valid = np.ones(n, bool)
    valid[[10, 11]] = False            # a short gap (filled)
    valid[50:70] = False               # a long gap (kept missing)
    cfg = load_config(None, [f"expressions.smoothing={method}", "expressions.max_gap=3"]).expressions
    res, _ = temporal.process(t, noisy, valid, 25.0, cfg)
    assert res.raw.shape == res.smooth.shape == (n, 2) and len(res.t) == n
    assert (res.valid == valid).all()
    assert res.filled[[10, 11]].all() and not res.filled[50:70].any()
    assert np.isnan(res.smooth[50:70]).all() and np.isfinite(res.smooth[res.usable]).all()
    assert res.params["method"] == method and res.params["max_gap"] == 3
    if method != "none":  # smoothing must actually remove jitter (frame-to-frame roughness)
        def rough(x):
            return np.nanmean(np.abs(np.diff(x[:50], 2, axis=0)))
        assert rough(res.smooth) < 0.5 * rough(noisy)
    if method == "savgol":  # zero-phase: also closer to the clean signal
        err_raw = np.abs(noisy[valid] - clean[valid]).mean()
        assert np.abs(res.smooth[valid] - clean[valid]).mean() < 0.8 * err_raw
    if method == "none":
        np.testing.assert_array_equal(res.smooth[valid], noisy[valid])


# ----------------------------------------------------------------------------- rig

def test_rig_beats_the_mean_mesh_and_round_trips(tmp_path):
    tracks = [synthetic_face_track(150, seed=s)[0] for s in range(3)]
    rig = fit_rig([t["landmarks"] for t in tracks], [t["transform"] for t in tracks],
                  [t["blendshapes"] for t in tracks], alpha=1e-3, names=BLENDSHAPE_NAMES)
    f = rig.figures
    assert f["n_frames"] == 450 and f["n_segments"] == 3
    assert f["rmse"] < 0.3 * f["baseline_rmse"] and f["r2"] > 0.9
    assert f["holdout_rmse"] < 0.3 * f["holdout_baseline_rmse"]
    # on a new clip: the rig's mesh from the clip's scores is closer to its landmarks than the mean mesh
    test_track = synthetic_face_track(60, seed=99)[0]
    canon = rig.canonicalise(test_track["landmarks"].astype(np.float64))
    pred = rig.apply(test_track["blendshapes"])
    assert pred.shape == (60, 478, 3)
    err_rig = np.linalg.norm(pred - canon, axis=2).mean()
    err_mean = np.linalg.norm(canon.mean(axis=0) - canon, axis=2).mean()
    assert err_rig < 0.5 * err_mean
    p = rig.save(tmp_path / "rig.npz")
    back = Rig.load(p)
    np.testing.assert_allclose(back.apply(test_track["blendshapes"]), pred, rtol=1e-5, atol=1e-6)
    assert back.names == list(BLENDSHAPE_NAMES) and back.figures == f
    with np.load(p, allow_pickle=False) as z:   # stored without pickle
        assert set(z.files) >= {"neutral", "W", "b", "reference", "figures"}


def test_rig_from_faces_entries_and_too_few_frames(tmp_path):
    from extract.expressions.rig import fit_rig_from_entries

    ws = Workspace(tmp_path / "ws")
    dirs = [write_faces_entry(ws, f"{i}" * 32, synthetic_face_track(30, seed=i)[0]) for i in range(2)]
    rig = fit_rig_from_entries(dirs, tmp_path / "rig.npz", load_config())      # as the build calls it
    assert rig is not None and Rig.load(tmp_path / "rig.npz").figures == rig.figures
    assert rig.figures["n_frames"] == 60 and rig.names == list(BLENDSHAPE_NAMES)
    assert fit_rig_from_entries(dirs[:1], tmp_path / "none.npz", load_config()) is None
    assert not (tmp_path / "none.npz").exists()
    tr = synthetic_face_track(10)[0]
    with pytest.raises(ValueError, match="at least 52"):
        fit_rig([tr["landmarks"]], [tr["transform"]], [tr["blendshapes"]])


# ----------------------------------------------------------------------------- stage (arkit52)

def test_stage_arkit52_writes_codes_and_caches(ctx):

    c = ctx("expressions.max_gap=2")
    track, _, _ = synthetic_face_track(40)
    track["valid"][[5, 6]] = False          # filled
    track["valid"][20:30] = False           # kept missing
    track["valid"][:3] = False              # a face that appears late: trimmed, not invented
    fdir = write_faces_entry(c.ws, "f" * 32, track)
    seg = {"segment_id": "seg1", "video_path": "/nonexistent.mp4", "start": 0.0, "end": 1.6}
    rec = run_expressions(seg, fdir, c)
    assert rec.ok, rec.detail
    out = Path(rec.output)
    with np.load(out / "codes.npz", allow_pickle=False) as z:
        raw, sm, valid, filled, t, fps = (z[k] for k in ("raw", "smooth", "valid", "filled", "t", "fps"))
    assert raw.shape == sm.shape == (37, 52) and float(fps) == 25.0
    np.testing.assert_allclose(t, np.arange(3, 40) / 25.0)
    v = track["valid"][3:]
    np.testing.assert_array_equal(raw[v], track["blendshapes"][3:][v])      # the face pass' blendshapes
    assert (valid == v).all() and filled[[2, 3]].all() and not filled[17:27].any()
    assert np.isnan(sm[17:27]).all() and np.isfinite(sm[~np.isin(np.arange(37), np.arange(17, 27))]).all()
    meta = json.loads((out / "codes.json").read_text())
    assert meta["code_space"] == "arkit52" and meta["dims"] == list(BLENDSHAPE_NAMES)
    assert meta["smoothing"]["method"] == "savgol" and meta["jaw_dims"] == [23, 24, 25, 26]
    assert not (out / "extra.npz").exists()
    assert rec.figures["n_valid"] == 25 and rec.figures["n_filled"] == 2
    assert (rec.figures["n_trim_start"], rec.figures["n_trim_end"], rec.figures["n_unusable_inside"]) == (3, 0, 10)
    # same inputs and settings: a cache hit; other smoothing: a miss and another entry
    again = run_expressions(seg, fdir, c)
    assert again.to_json() == rec.to_json()
    stats = read_stats(c.run_dir)["expressions"]          # an item counts once, by its last run: the hit
    assert (stats["items"], stats["hits"], stats["misses"]) == (1, 1, 0)
    c2 = ctx("expressions.smoothing=one_euro")
    rec2 = run_expressions(seg, fdir, c2)
    assert rec2.ok and rec2.output != rec.output
    meta2 = json.loads((Path(rec2.output) / "codes.json").read_text())
    assert meta2["smoothing"]["method"] == "one_euro" and "beta" in meta2["smoothing"]


def test_stage_resamples_to_the_dataset_rate(ctx):

    c = ctx("expressions.fps=30", "expressions.smoothing=none")
    track, _, _ = synthetic_face_track(26)                  # 1.0 s at 25 fps
    rec = run_expressions({"segment_id": "r", "video_path": "", "start": 0.0, "end": 1.0},
                                write_faces_entry(c.ws, "a" * 32, track), c)
    assert rec.ok and rec.figures["fps"] == 30.0
    with np.load(Path(rec.output) / "codes.npz") as z:
        assert len(z["t"]) == 31 and np.allclose(np.diff(z["t"]), 1 / 30) and z["valid"].all()
        ref = np.stack([np.interp(z["t"], track["t"], track["blendshapes"][:, j]) for j in range(52)], axis=1)
        np.testing.assert_allclose(z["raw"], ref, atol=1e-6)
    meta = json.loads((Path(rec.output) / "codes.json").read_text())
    assert meta["source_fps"] == 25.0 and meta["smoothing"]["fps"] == 30.0


def test_stage_upstream_and_bad_track(ctx):

    c = ctx()
    seg = {"segment_id": "s", "video_path": "", "start": 0.0, "end": 1.0}
    assert run_expressions(seg, None, c).reason is Reason.UPSTREAM
    track, _, _ = synthetic_face_track(5)
    del track["transform"]
    fdir = write_faces_entry(c.ws, "e" * 32, track)
    rec = run_expressions(seg, fdir, c)
    assert rec.status.value == "failed" and "track.npz" in rec.detail and "transform" in rec.detail
    track, _, _ = synthetic_face_track(5)
    track["valid"][:] = False
    rec = run_expressions(seg, write_faces_entry(c.ws, "d" * 32, track), c)
    assert rec.reason is Reason.NO_CODES


def real_segment(sample_dir, name="talk_01.mp4", k=0):
    from pipeline.hashing import file_hash

    p = Path(sample_dir) / "folder" / name
    sig = json.loads(p.with_suffix(".signals.json").read_text())
    s = sig["sentences"][k]
    return {"segment_id": f"{name}-{k}", "video_path": str(p), "video_hash": file_hash(p),
            "start": s["start"], "end": s["end"]}, sig


def test_arkit52_stage_and_rig_on_real_sample(sample_dir, ctx):
    """The faces stage on a generated talking clip, then arkit52: codes = the face pass' blendshapes,
    jawOpen follows the clip's driven mouth opening, and a rig fitted on two of its sentences
    reconstructs held-out landmarks better than the mean mesh."""
    from extract.expressions.rig import fit_rig_from_faces

    c = ctx()
    seg, sig = real_segment(sample_dir)
    frec = run_faces(seg, c)
    assert frec.ok, frec.detail
    rec = run_expressions(seg, Path(frec.output), c)
    assert rec.ok, rec.detail
    with np.load(Path(frec.output) / "track.npz") as tz, np.load(Path(rec.output) / "codes.npz") as cz:
        v, bs, t = tz["valid"], tz["blendshapes"], tz["t"]
        assert float(tz["fps"]) == c.cfg.expressions.fps == 25.0
        np.testing.assert_array_equal(cz["raw"][v], bs[v])
        np.testing.assert_array_equal(cz["t"], t)
        jaw = cz["smooth"][:, BLENDSHAPE_NAMES.index("jawOpen")]
    truth = np.interp(seg["start"] + t, np.asarray(sig["t"]), np.asarray(sig["mouth_open"]))
    ok_ = np.isfinite(jaw)
    assert np.corrcoef(jaw[ok_], truth[ok_])[0, 1] > 0.5
    seg2, _ = real_segment(sample_dir, k=1)
    frec2 = run_faces(seg2, c)
    assert frec2.ok, frec2.detail
    rig = fit_rig_from_faces([frec.output, frec2.output], c.cfg.expressions)
    f = rig.figures
    assert f["n_segments"] == 2 and f["n_frames"] >= 52
    assert f["rmse"] < 0.5 * f["baseline_rmse"]
    assert f["holdout_rmse"] < 0.7 * f["holdout_baseline_rmse"]   # trained on one sentence, tested on the other
