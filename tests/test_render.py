"""FLAME reading without chumpy, mesh rendering to mp4, code curves, and the CLI end to end."""
from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest
import torch

from model.flame import FlameFormatError, flame_vertices, load_flame
from model.render import ascii_caption, count_frames, face_mesh_triangles, plot_curves, render_video

torch.set_num_threads(1)


def make_flame_file(path, V=12, n_shape=300, n_exp=100, seed=0):
    """A small file in FLAME 2020's format: a Python-2-protocol pickle of a dict whose arrays are
    chumpy.ch.Ch objects (made with a stand-in chumpy module) and whose J_regressor is a scipy CSC matrix."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    mod_ch = types.ModuleType("chumpy.ch")

    class Ch:  # chumpy pickles a Ch as its __dict__, whose 'x' is the value
        def __init__(self, x):
            self.x = x
            self._dirty_vars = set()

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    mod_ch.Ch = Ch
    chumpy = types.ModuleType("chumpy")
    chumpy.ch = mod_ch
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = chumpy, mod_ch
    try:
        v_template = rng.normal(0, 0.05, (V, 3))
        weights = np.zeros((V, 5))
        weights[: V // 2, 0] = 1.0   # upper face follows the root
        weights[V // 2:, 2] = 1.0    # lower face follows the jaw
        Jr = np.zeros((5, V))
        for j in range(5):
            Jr[j, j * 2:(j * 2) + 2] = 0.5
        d = {"v_template": Ch(v_template), "shapedirs": Ch(rng.normal(0, 1e-3, (V, 3, n_shape + n_exp))),
             "posedirs": Ch(rng.normal(0, 1e-4, (V, 3, 36))), "J_regressor": sp.csc_matrix(Jr),
             "weights": Ch(weights), "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]]),
             "f": np.array([[0, 1, 2], [2, 3, 4], [5, 6, 7], [8, 9, 10]], np.uint32),
             "J": Ch(Jr @ v_template), "bs_style": "lbs", "bs_type": "lrotmin"}
        path.write_bytes(pickle.dumps(d, protocol=2))
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]
    return d


def test_flame_loads_without_chumpy_and_poses(tmp_path):
    p = tmp_path / "generic_model.pkl"
    src = make_flame_file(p)
    assert "chumpy" not in sys.modules
    fm = load_flame(p)
    assert fm.n_exp == 100 and fm.faces.shape == (4, 3) and list(fm.parents) == [-1, 0, 1, 1, 1]
    assert np.allclose(fm.J_regressor, src["J_regressor"].toarray())
    T = 3
    rest = flame_vertices(fm, np.zeros((T, 50)), np.zeros((T, 3)))
    assert np.allclose(rest, fm.v_template[None])
    exp = np.zeros((T, 50))
    exp[:, 4] = 2.0
    v = flame_vertices(fm, exp, np.zeros((T, 3)))
    assert np.allclose(v - fm.v_template, 2.0 * fm.shapedirs[:, :, 304][None])
    # a jaw rotation moves only the jaw-weighted vertices (upper face fixed, up to pose correctives)
    jaw = np.zeros((T, 3))
    jaw[:, 0] = 0.3
    v = flame_vertices(fm, np.zeros((T, 50)), jaw)
    moved = np.linalg.norm(v[0] - fm.v_template, axis=1)
    assert moved[:6].max() < 5e-3 < moved[6:].max()
    # jaw-weighted vertices rotate about the jaw joint (pose correctives here are ~1e-3)
    from model.flame import rodrigues
    J2 = fm.J_regressor[2] @ fm.v_template
    want = (fm.v_template[6:] - J2) @ rodrigues(jaw[0]).T + J2
    assert np.allclose(v[0, 6:], want, atol=5e-3)


def test_flame_reader_refuses_other_objects(tmp_path):
    class Boom:
        def __reduce__(self):
            import os
            return (os.system, ("echo pwned",))

    p = tmp_path / "bad.pkl"
    p.write_bytes(pickle.dumps({"v_template": Boom()}, protocol=2))
    with pytest.raises(FlameFormatError, match="refusing"):
        load_flame(p)
    p.write_bytes(pickle.dumps({"v_template": np.zeros((3, 3))}, protocol=2))
    with pytest.raises(FlameFormatError, match="'shapedirs' is missing"):
        load_flame(p)


def face_like(T, seed=0):
    """A (T, 478, 3) landmark sequence: points on a half ellipsoid with a moving 'jaw'."""
    rng = np.random.default_rng(seed)
    u = rng.uniform(0, np.pi, 478)
    w = rng.uniform(0, np.pi, 478)
    base = np.stack([np.cos(u) * np.sin(w) * 7, np.cos(w) * 9, np.sin(u) * np.sin(w) * 5], 1)
    out = np.repeat(base[None], T, 0)
    out[:, base[:, 1] < 0, 1] -= np.linspace(0, 2, T)[:, None]
    return out


def test_render_writes_playable_mp4_with_expected_frames(tmp_path):
    tris = face_mesh_triangles()
    assert tris.shape == (852, 3) and tris.max() == 467  # the 10 iris points are not meshed
    out = tmp_path / "side.mp4"
    render_video([("real", face_like(5)), ("generated", face_like(9, 1))], tris, out, 25.0,
                 "“I can’t believe it…” — really?", size=96)
    assert count_frames(out) == 9  # the longer panel sets the length
    assert out.read_bytes()[4:8] == b"ftyp"
    assert ascii_caption("“I can’t…”") == '"I can\'t..."'
    png = plot_curves({"real": np.random.rand(10, 4), "gen": np.random.rand(12, 4)}, [0, 3],
                      ["a", "b", "c", "jawOpen"], 25.0, tmp_path / "c.png", "text")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_arkit52_codes_render_through_the_dataset_rig(tmp_path):
    from extract.expressions.rig import ALIGN_IDX, Rig
    from model.render import codes_to_mesh

    rng = np.random.default_rng(0)
    neutral = face_like(1)[0] * np.array([1, -1, -1])  # the rig's frame: y down, z away from the camera
    W = np.zeros((52, 478, 3))
    W[24, neutral[:, 1] > 0, 1] = 1.5                   # a "jawOpen" that drops the lower face
    Rig(neutral, W, np.zeros((478, 3)), rng.normal(size=(len(ALIGN_IDX), 3)), 1.0,
        [f"b{i}" for i in range(52)]).save(tmp_path / "rig.npz")
    codes = np.zeros((6, 52), np.float32)
    codes[:, 24] = np.linspace(0, 1, 6)
    verts, tris, y_up, z_toward = codes_to_mesh([codes], "arkit52", tmp_path)
    assert verts[0].shape == (6, 478, 3) and (y_up, z_toward) == (False, False)
    assert np.allclose(verts[0][-1] - verts[0][0], W[24])
    render_video([("generated", verts[0])], tris, tmp_path / "a.mp4", 24.0, "jaw", 64, y_up, z_toward)
    assert count_frames(tmp_path / "a.mp4") == 6


def test_cli_train_sample_evaluate_render_flame53(tmp_path):
    """The main job on a tiny flame53 set: train, sample, evaluate, render side by side through FLAME."""
    import json

    import typer
    from typer.testing import CliRunner

    from model import cli
    from test_model import make_dataset

    root = make_dataset(tmp_path / "ds", D=53, code_space="flame53")
    make_flame_file(tmp_path / "flame.pkl", V=12)
    app = typer.Typer()
    cli.register(app)
    run = CliRunner().invoke
    out = tmp_path / "run"
    sets = ["--set", "threads=1", "--set", f"text_cache={tmp_path / 'tc'}", "--set", "eval_every=10"]
    r = run(app, ["train", str(root), "--config", "small", "--max-steps", "12", "--out", str(out), *sets])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output[r.output.index("{"):])["steps"] == 12
    assert {"best.pt", "last.pt", "log.csv"} <= {p.name for p in out.iterdir()} and (out / "tb").is_dir()
    r = run(app, ["sample", str(out / "best.pt"), "--text", "Hello there!", "-n", "3",
                  "--max-frames", "20", "--out", str(tmp_path / "g.parquet")])
    assert r.exit_code == 0, r.output
    from model.sample import read_generations
    g = read_generations(tmp_path / "g.parquet")
    assert len(g) == 3 and all(x["codes"].shape[1] == 53 for x in g)
    r = run(app, ["evaluate", str(out / "best.pt"), "-n", "2", "--max-texts", "3", "--out", str(tmp_path / "e.json"),
                  "--set", f"text_cache={tmp_path / 'tc'}"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["texts"] == 3 and res["ppl_free"] >= 1.0 and res["ppl_free_box"] >= res["ppl_free"] * 0.999
    assert res["ppl_paper"] >= 1.0 and (res["ppl_sigma"], res["ppl_delta"]) == (0.2, 0.8)  # flame53: EmoAva's
    r = run(app, ["render", str(out / "best.pt"), "--index", "1", "--flame", str(tmp_path / "flame.pkl"),
                  "--out", str(tmp_path / "v.mp4"), "--curves", str(tmp_path / "c.png"), "--size", "64"])
    assert r.exit_code == 0, r.output
    assert count_frames(tmp_path / "v.mp4") >= 10 and (tmp_path / "c.png").exists()
    r = run(app, ["render", str(out / "best.pt"), "--index", "0", "--out", str(tmp_path / "x.mp4")])
    assert r.exit_code != 0 and "--flame" in r.output


def test_real_clip_panel_shows_the_tracked_face(sample_dir, tmp_path):
    """The comparison video's first panel: the real clip cropped around the kept track's box, at the
    dataset rate, next to mesh panels; a shorter panel is marked where it ended."""
    import json

    from model.render import face_frames

    clip = sample_dir / "folder" / "talk_01.mp4"
    sig = json.loads(clip.with_suffix(".signals.json").read_text())
    t = np.asarray(sig["t"], np.float64)
    box = np.asarray([f[0] for f in sig["face_boxes"]], np.float64)   # the generator's true face box
    faces = face_frames(clip, 0.0, 1.0, 25.0, t, box, 96, n=20)
    assert faces.shape == (20, 96, 96, 3) and faces.dtype == np.uint8
    # the face fills the middle of the panel: brighter there than in a crop far from it
    away = face_frames(clip, 0.0, 1.0, 25.0, t, box + np.array([1000.0, 1000.0, 1000.0, 1000.0]), 96, n=20)
    assert faces[:, 24:72, 24:72].mean() > 60 and away.mean() < 5
    out = render_video([("real clip", faces), ("generated", face_like(12))], face_mesh_triangles(),
                       tmp_path / "cmp.mp4", 25.0, "Hello there!", 96, y_up=False, z_toward_viewer=False)
    assert count_frames(out) == 20
