"""flame53: our EMOCA v2 encoders against checkpoints written in EMOCA's exact format (key names and
shapes, random weights), and the expressions stage with the flame53 backend."""
from __future__ import annotations

import json
import logging
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from pipeline.formats.track import read_track
from stages import run_expressions
import torch
import yaml

from extract.expressions import get_backend
from extract.expressions.emoca import (SKIP_PREFIXES, EmocaEncoders, EmocaError, EmocaSpec, find_checkpoint,
                                       load_checkpoint_weights, load_emoca, map_state_dict, model_cfg_dict,
                                       write_random_emoca_folder)
from pipeline.config import load_config
from pipeline.context import StageContext
from pipeline.workspace import Workspace

CKPT_REL = "detail/checkpoints/deca-epoch=03-val_loss/dataloader_idx_0=9.44489288.ckpt"


@pytest.fixture(scope="module")
def emoca_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("emoca") / "EMOCA_v2_lr_mse_20"
    write_random_emoca_folder(d, jaw=True, global_pose=False, seed=0)
    return d


@pytest.fixture(scope="module")
def model(emoca_dir):
    return load_emoca(emoca_dir, "cpu")


def crops(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)


def test_checkpoint_loads_and_runs_on_cpu(emoca_dir, caplog):
    with caplog.at_level(logging.INFO, logger="wordsmile.expressions.emoca"):
        m = load_emoca(emoca_dir, "cpu")
    assert m.checkpoint == emoca_dir / CKPT_REL and m.device.type == "cpu"
    assert m.spec.exp_jaw_pose and not m.spec.exp_global_pose and m.spec.n_exp_param == 53
    out = m.predict(crops(3), batch_size=2)
    assert {k: v.shape for k, v in out.items()} == {"shape": (3, 100), "tex": (3, 50), "exp": (3, 50),
                                                    "pose": (3, 6), "cam": (3, 3), "light": (3, 27)}
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in out.values())
    # the skipped parts are logged by prefix, and only documented prefixes were skipped
    logged = caplog.text
    for p in ("deca.E_detail.", "deca.D_detail.", "deca.flame.", "emonet_loss."):
        assert f"under {p!r}" in logged
    assert set(m.skipped) <= set(SKIP_PREFIXES) and "keys outside" not in logged


def test_same_input_same_output(model):
    x = crops(3, seed=1)
    a = model.predict(x, batch_size=3)
    b = model.predict(x, batch_size=3)
    c = model.predict(x, batch_size=2)   # batching does not change a frame's codes
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        np.testing.assert_allclose(a[k], c[k], rtol=1e-4, atol=1e-5)
    d = model.predict(crops(1, seed=2), batch_size=1)
    assert not np.allclose(a["exp"][:1], d["exp"])   # and the input matters


def test_pose_sources_follow_the_config(model):
    """exp_deca_jaw_pose: exp and jaw from E_expression, global pose and the rest from E_flame."""
    x = torch.as_tensor(crops(2, seed=3)).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        codes = model.net(x)
        flat, e = model.net.E_flame(x), model.net.E_expression(x)
    assert e.shape == (2, 53) and flat.shape == (2, 236)   # 100 + 50 + 50 + 6 + 3 + 27
    torch.testing.assert_close(codes["exp"], e[:, :50])
    torch.testing.assert_close(codes["pose"][:, 3:], e[:, 50:53])
    torch.testing.assert_close(codes["pose"][:, :3], flat[:, 200:203])
    torch.testing.assert_close(codes["shape"], flat[:, :100])
    torch.testing.assert_close(codes["cam"], flat[:, 206:209])
    # the other flag combinations size the expression head as EMOCA's ExpDECA.reconfigure does
    def spec(**kw):
        return EmocaSpec.from_model_cfg(model_cfg_dict(**kw), "t")
    assert spec(jaw=True, global_pose=True).n_exp_param == 56
    assert spec(jaw=False, global_pose=True).n_exp_param == 53
    assert spec(jaw=False, global_pose=False).n_exp_param == 50
    assert not spec(deca_class="DECA").expression


def test_missing_key_gives_the_listed_error(tmp_path):
    gone = ["deca.E_expression.layers.2.weight", "deca.E_flame.encoder.layer4.2.bn3.running_var"]
    write_random_emoca_folder(tmp_path / "m", drop=tuple(gone))
    with pytest.raises(EmocaError) as ei:
        load_emoca(tmp_path / "m", "cpu")
    msg = str(ei.value)
    assert "missing keys (2)" in msg and all(k in msg for k in gone) and "dataloader_idx_0=9.44489288.ckpt" in msg


def test_misshaped_and_unexpected_keys_are_listed(model):
    sd = OrderedDict(("deca." + k, v) for k, v in model.net.state_dict().items())
    sd["deca.E_expression.layers.2.weight"] = torch.zeros(50, 1024)       # a model without the jaw head
    sd["deca.E_flame.extra_head.weight"] = torch.zeros(3)
    sd["deca.E_detail.layers.0.weight"] = torch.zeros(1)                   # skipped, not an error
    with pytest.raises(EmocaError) as ei:
        map_state_dict(EmocaEncoders(model.spec), sd, "x.ckpt")
    msg = str(ei.value)
    assert "mis-shaped keys (1)" in msg and "(50, 1024) vs model (53, 1024)" in msg
    assert "unexpected keys (1): deca.E_flame.extra_head.weight" in msg and "missing" not in msg


def test_cfg_missing_key_names_file_and_key(tmp_path):
    m = model_cfg_dict()
    del m["exp_deca_jaw_pose"]
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({"coarse": {"model": m}, "detail": {"model": m}}))
    with pytest.raises(EmocaError, match=r"cfg\.yaml \[detail\.model\].*'exp_deca_jaw_pose'"):
        load_emoca(tmp_path, "cpu")
    with pytest.raises(EmocaError, match="does not exist.*expressions.emoca_path"):
        load_emoca(tmp_path / "nope", "cpu")


def test_checkpoint_selection(tmp_path):
    ck = tmp_path / "detail" / "checkpoints"
    for name in ["deca-epoch=01-val_loss/dataloader_idx_0=4.5.ckpt", "deca-epoch=02-val_loss/dataloader_idx_0=3.25.ckpt",
                 "deca-epoch=03-val_loss/dataloader_idx_0=3.9.ckpt", "last.ckpt"]:
        (ck / name).parent.mkdir(parents=True, exist_ok=True)
        (ck / name).write_bytes(b"")
    assert find_checkpoint(tmp_path, "detail", "best").name == "dataloader_idx_0=3.25.ckpt"
    assert find_checkpoint(tmp_path, "detail", "latest").name == "last.ckpt"
    assert find_checkpoint(tmp_path, "detail", "last.ckpt").name == "last.ckpt"
    with pytest.raises(EmocaError, match="coarse/checkpoints"):
        find_checkpoint(tmp_path, "coarse", "best")


def test_old_lightning_checkpoint_objects_stay_inert(tmp_path):
    """Old Lightning keys its callback states by class; the weights-only loader must read the tensors
    without importing or running that class."""
    mod = types.ModuleType("fake_lightning_cb")
    ran = []

    class ModelCheckpoint:
        def __setstate__(self, state):
            ran.append(state)

    ModelCheckpoint.__module__ = "fake_lightning_cb"
    ModelCheckpoint.__qualname__ = "ModelCheckpoint"
    mod.ModelCheckpoint = ModelCheckpoint
    sys.modules["fake_lightning_cb"] = mod
    try:
        obj = ModelCheckpoint()
        torch.save({"state_dict": {"deca.E_flame.layers.2.bias": torch.arange(3.0)},
                    "callbacks": {ModelCheckpoint: {"best": 1.0}}, "extra": obj}, tmp_path / "old.ckpt")
    finally:
        del sys.modules["fake_lightning_cb"]
    sd = load_checkpoint_weights(tmp_path / "old.ckpt")
    torch.testing.assert_close(sd["deca.E_flame.layers.2.bias"], torch.arange(3.0))
    assert ran == []
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(EmocaError, match="bad.ckpt"):
        load_checkpoint_weights(tmp_path / "bad.ckpt")


# ----------------------------------------------------------------------------- the stage with flame53

def _ctx(tmp_path, emoca_dir, *more) -> StageContext:
    cfg = load_config(None, ["expressions.backend=flame53", f"expressions.emoca_path={emoca_dir}",
                             "expressions.device=cpu", "expressions.batch_size=4", *more])
    ws = Workspace(tmp_path / "ws")
    return StageContext(cfg=cfg, ws=ws, run_dir=ws.new_run_dir())


def test_flame53_stage_with_crops_npy(tmp_path, emoca_dir, model):
    from tests.test_expressions import synthetic_face_track, write_faces_entry

    c = _ctx(tmp_path, emoca_dir, "expressions.smoothing=none")
    track, _, _ = synthetic_face_track(4)
    track["valid"][2] = False
    x = crops(4, seed=5)
    fdir = write_faces_entry(c.ws, "c" * 32, track, crops=x)
    rec = run_expressions({"segment_id": "s", "video_path": "", "start": 0.0, "end": 0.24}, fdir, c)
    assert rec.ok, rec.detail
    out = Path(rec.output)
    ref = model.predict(x, batch_size=4)
    with np.load(out / "codes.npz") as z, np.load(out / "extra.npz") as e:
        raw, valid = z["raw"], z["valid"]
        assert raw.shape == (4, 53) and valid.tolist() == [True, True, False, True]
        expect = np.concatenate([ref["exp"], ref["pose"][:, 3:6]], axis=1)
        np.testing.assert_allclose(raw[valid], expect[valid], rtol=1e-4, atol=1e-5)
        assert np.isnan(raw[2]).all()
        assert e["global_pose"].shape == (4, 3) and e["shape"].shape == (4, 100) and e["cam"].shape == (4, 3)
        np.testing.assert_allclose(e["global_pose"][valid], ref["pose"][valid, :3], rtol=1e-4, atol=1e-5)
    meta = json.loads((out / "codes.json").read_text())
    assert meta["code_space"] == "flame53" and meta["D"] == 53 and meta["jaw_dims"] == [50, 51, 52]
    assert meta["dims"][-3:] == ["jaw_x", "jaw_y", "jaw_z"] and meta["crops"] == "crops.npy"
    assert meta["versions"]["exp_deca_jaw_pose"] is True and meta["versions"]["emoca_checkpoint"] == CKPT_REL


def test_flame53_stage_decodes_and_crops_without_crops_npy(tmp_path, emoca_dir, sample_dir):
    """No crops.npy: the stage decodes the real clip and cuts DECA crops around the track's face."""
    from extract.expressions import stage
    from tests.test_expressions import real_segment, write_faces_entry

    seg, sig = real_segment(sample_dir)
    fps, n = 25.0, 4
    t = 1 / fps + np.arange(n) / fps     # the faces stage's frame times for this decode (see test_faces)
    boxes = np.array([sig["face_boxes"][int(round((seg["start"] + ti) * fps))][0] for ti in t], np.float64)
    rng = np.random.default_rng(0)   # landmarks spread over the true face box: DECA's box follows it
    u = rng.uniform(0, 1, (n, 478, 2))
    lm = np.concatenate([boxes[:, None, :2] + u * (boxes[:, None, 2:] - boxes[:, None, :2]),
                         np.zeros((n, 478, 1))], axis=2)
    track = {"t": t, "box": boxes.astype(np.float32),
             "landmarks": lm.astype(np.float16), "transform": np.tile(np.eye(4, dtype=np.float32), (n, 1, 1)),
             "blendshapes": np.zeros((n, 52), np.float32), "valid": np.ones(n, bool), "fps": np.float64(fps)}
    c = _ctx(tmp_path, emoca_dir)
    fdir = write_faces_entry(c.ws, "b" * 32, track)
    crops_, got, src = stage.track_crops(seg, fdir, read_track(fdir), c.cfg.expressions, c.log)
    assert src == "decoded" and got.all() and crops_.shape == (n, 224, 224, 3)
    assert crops_.std() > 20                               # real face pixels, not black
    centre = crops_[:, 80:144, 80:144].astype(float)      # the face fills the crop's middle
    assert centre.std() > 10 and centre.mean() > 30
    rec = run_expressions(seg, fdir, c)
    assert rec.ok, rec.detail
    assert rec.figures["n_valid"] == n
    assert json.loads((Path(rec.output) / "codes.json").read_text())["crops"] == "decoded"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_matches_cpu(emoca_dir, model):
    x = crops(16, seed=7)
    ref = model.predict(x, batch_size=8)
    gpu = load_emoca(emoca_dir, "cuda")
    for precision, rtol in (("fp32", 1e-3), ("bf16", 5e-2)):
        out = gpu.predict(x, batch_size=8, precision=precision, channels_last=True)
        for k in ("exp", "pose", "shape", "cam"):
            err = np.abs(out[k] - ref[k]).max() / (np.abs(ref[k]).max() + 1e-6)
            assert err < rtol, (precision, k, err)
    cfg = load_config(None, ["expressions.backend=flame53", f"expressions.emoca_path={emoca_dir}",
                             "expressions.device=cuda"]).expressions
    b = get_backend(None, cfg)
    track = {"valid": np.ones(16, bool)}
    codes = b.encode(track, x).codes
    assert codes.shape == (16, 53) and np.isfinite(codes).all()
