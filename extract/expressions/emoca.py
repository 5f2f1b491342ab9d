"""EMOCA v2 expression regression in plain torch: the parts that produce FLAME codes.

What EMOCA (ExpDECA) computes for a 224x224 face crop with RGB in [0, 1] (no mean/std normalisation):
- the DECA coarse encoder `E_flame`: ResNet-50 features (2048) -> Linear(2048, 1024) -> ReLU ->
  Linear(1024, n_shape + n_tex + n_exp + n_pose + n_cam + n_light), split in that order;
- the EMOCA expression encoder `E_expression` (`expression_backbone: deca_clone`): its own ResNet-50
  and the same two-layer head, predicting n_exp values, plus 3 jaw-pose values when the model config
  has `exp_deca_jaw_pose`, 3 global-pose values with `exp_deca_global_pose`, or the whole pose
  (n_pose) with both. Its exp (and those pose parts) replace E_flame's; the rest (shape, tex, cam,
  light and any pose part it does not predict) comes from E_flame.
Pose is axis-angle: pose[0:3] global head rotation, pose[3:6] jaw.

A model folder is what EMOCA distributes (e.g. `EMOCA_v2_lr_mse_20/`): `cfg.yaml` with `coarse:` and
`detail:` sections (each with `model:`), and `detail/checkpoints/**/*.ckpt` PyTorch Lightning
checkpoints whose `state_dict` holds `deca.E_flame.*`, `deca.E_expression.*` and parts we do not run
(SKIP_PREFIXES). The checkpoint is read with `torch.load(weights_only=True)`: no code from it runs.
"""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from extract.expressions.base import Backend, BackendOutput, ExpressionsSetupError
from extract.expressions.resnet import ResNet50

log = logging.getLogger("wordsmile.expressions.emoca")

OWN_PREFIX = "deca."
OWN_MODULES = ("E_flame", "E_expression")
# Checkpoint parts we never run: detail encoder/decoder, FLAME and texture models, renderer buffers,
# perceptual/identity/emotion loss networks. Keys under them are skipped (and counted in the log).
SKIP_PREFIXES = (
    "deca.E_detail.", "deca.D_detail.", "deca.flame.", "deca.flametex.", "deca.render.",
    "deca.uv_face_eye_mask", "deca.fixed_uv_dis", "deca.face_attr_mask",
    "deca.perceptual_loss.", "deca.id_loss.", "deca.vgg_loss.",
    "emonet_loss.", "au_loss.", "lipread_loss.", "emotion_mlp.",
)
CODE_ORDER = ("shape", "tex", "exp", "pose", "cam", "light")
IMAGE_SIZE = 224


class EmocaError(ExpressionsSetupError):
    """A model folder, config or checkpoint that cannot be used; the message names the file and key."""


# ----------------------------------------------------------------------------- config

@dataclass(frozen=True)
class EmocaSpec:
    n_shape: int
    n_tex: int
    n_exp: int
    n_pose: int
    n_cam: int
    n_light: int
    expression: bool          # ExpDECA (EMOCA) has a separate expression encoder; plain DECA does not
    exp_jaw_pose: bool        # E_expression also predicts pose[3:6]
    exp_global_pose: bool     # E_expression also predicts pose[0:3]

    @property
    def n_param(self) -> int:
        return self.n_shape + self.n_tex + self.n_exp + self.n_pose + self.n_cam + self.n_light

    @property
    def n_exp_param(self) -> int:
        # EMOCA's ExpDECA.reconfigure: both flags -> + n_pose, one flag -> + 3
        if self.exp_jaw_pose and self.exp_global_pose:
            return self.n_exp + self.n_pose
        if self.exp_jaw_pose or self.exp_global_pose:
            return self.n_exp + 3
        return self.n_exp

    @classmethod
    def from_model_cfg(cls, m: dict, where: str) -> "EmocaSpec":
        def need(key: str):
            if key not in m:
                raise EmocaError(f"{where}: model config lacks key {key!r}")
            return m[key]

        sizes = {k: int(need(f"n_{k}")) for k in CODE_ORDER}
        if sizes["pose"] != 6:
            raise EmocaError(f"{where}: n_pose = {sizes['pose']}; FLAME pose is 6 (global 3 + jaw 3)")
        e_flame_type = m.get("e_flame_type", "ResnetEncoder") or "ResnetEncoder"
        if e_flame_type != "ResnetEncoder":
            raise EmocaError(f"{where}: e_flame_type {e_flame_type!r} is not supported (only ResnetEncoder)")
        deca_class = str(m.get("deca_class") or "DECA")
        expression = deca_class in ("ExpDECA", "EMOCA")
        if deca_class not in ("DECA", "ExpDECA", "EMOCA"):
            raise EmocaError(f"{where}: deca_class {deca_class!r} is not supported (DECA or ExpDECA)")
        jaw = glob = False
        if expression:
            backbone = need("expression_backbone")
            if backbone != "deca_clone":
                raise EmocaError(f"{where}: expression_backbone {backbone!r} is not supported; EMOCA v2 uses "
                                 "'deca_clone'")
            jaw, glob = bool(need("exp_deca_jaw_pose")), bool(need("exp_deca_global_pose"))
        if sizes["exp"] < 50:
            raise EmocaError(f"{where}: n_exp = {sizes['exp']}; flame53 needs at least 50 expression coefficients")
        return cls(sizes["shape"], sizes["tex"], sizes["exp"], sizes["pose"], sizes["cam"], sizes["light"],
                   expression, jaw, glob)


def read_cfg(folder: Path, stage: str) -> tuple[EmocaSpec, dict]:
    path = folder / "cfg.yaml"
    if not path.is_file():
        raise EmocaError(f"{path}: missing; an EMOCA model folder holds cfg.yaml and {stage}/checkpoints/ "
                         "(see docs/expressions.md)")
    try:
        conf = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise EmocaError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(conf, dict):
        raise EmocaError(f"{path}: top level is not a mapping")
    section = conf.get(stage, conf if "model" in conf else None)
    if not isinstance(section, dict):
        raise EmocaError(f"{path}: no {stage!r} section (keys: {sorted(conf)})")
    model = section.get("model")
    if not isinstance(model, dict):
        raise EmocaError(f"{path}: section {stage!r} lacks key 'model'")
    return EmocaSpec.from_model_cfg(model, f"{path} [{stage}.model]"), model


# ----------------------------------------------------------------------------- networks

class Regressor(nn.Module):
    """DECA's ResnetEncoder: `encoder` (ResNet-50 -> 2048) then `layers` (2048 -> 1024 -> out)."""

    def __init__(self, outsize: int):
        super().__init__()
        self.encoder = ResNet50()
        self.layers = nn.Sequential(nn.Linear(ResNet50.feature_size, 1024), nn.ReLU(), nn.Linear(1024, outsize))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.encoder(x))


class EmocaEncoders(nn.Module):
    """E_flame (+ E_expression): images (B, 3, 224, 224) in [0, 1] -> FLAME code dict."""

    def __init__(self, spec: EmocaSpec):
        super().__init__()
        self.spec = spec
        self.E_flame = Regressor(spec.n_param)
        if spec.expression:
            self.E_expression = Regressor(spec.n_exp_param)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        s = self.spec
        flat = self.E_flame(images)
        codes, start = {}, 0
        for k in CODE_ORDER:
            n = getattr(s, f"n_{k}")
            codes[k] = flat[:, start:start + n]
            start += n
        if s.expression:
            e = self.E_expression(images)
            codes["exp"] = e[:, :s.n_exp]
            extra = e[:, s.n_exp:]
            if s.exp_jaw_pose and s.exp_global_pose:
                codes["pose"] = extra
            elif s.exp_global_pose:
                codes["pose"] = torch.cat([extra, codes["pose"][:, 3:]], dim=1)
            elif s.exp_jaw_pose:
                codes["pose"] = torch.cat([codes["pose"][:, :3], extra], dim=1)
        return codes


# ----------------------------------------------------------------------------- checkpoint

class _Inert:
    """Stands in for a non-tensor object of a checkpoint (e.g. an old Lightning callback class used as
    a dict key): built without running any of its code, holds nothing."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


def _inert_global(full_name: str):
    module, _, name = full_name.rpartition(".")
    return type(name, (_Inert,), {"__module__": module, "__qualname__": name}), full_name


def load_checkpoint_weights(path: Path) -> dict[str, torch.Tensor]:
    """The `state_dict` of a Lightning checkpoint, read with weights_only=True. Globals the safe loader
    refuses (classes of Lightning/omegaconf objects outside the weights) are mapped to inert
    placeholders, never imported or run."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as first:
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
            if not unsafe:
                raise first
            log.info("%s: %d non-tensor globals replaced by inert placeholders: %s", path, len(unsafe), unsafe[:5])
            with torch.serialization.safe_globals([_inert_global(n) for n in unsafe]):
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # still not a weights file we can read safely
            raise EmocaError(f"{path}: cannot be read as weights only ({type(e).__name__}: {e})") from None
    except Exception as e:
        raise EmocaError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict):
        raise EmocaError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    sd = ckpt.get("state_dict", ckpt)
    if not isinstance(sd, dict):
        raise EmocaError(f"{path}: key 'state_dict' is not a mapping")
    return sd


def find_checkpoint(folder: Path, stage: str, which: str = "best") -> Path:
    """EMOCA's selection: `which` = 'best' (lowest value after the last '=' of the file stem, 'last'
    excluded), 'latest' (last in sorted order) or a file name/path."""
    ckdir = folder / stage / "checkpoints"
    if which not in ("best", "latest"):
        for cand in (Path(which), folder / which, ckdir / which):
            if cand.is_file():
                return cand
        raise EmocaError(f"checkpoint {which!r} not found under {folder} (expressions.emoca_checkpoint)")
    ckpts = sorted(ckdir.rglob("*.ckpt")) if ckdir.is_dir() else []
    if not ckpts:
        raise EmocaError(f"{ckdir}: no *.ckpt found; expected EMOCA's {stage}/checkpoints/ folder "
                         "(see docs/expressions.md)")
    if which == "latest":
        return ckpts[-1]
    best, best_v = None, float("inf")
    for p in ckpts:
        if p.stem == "last":
            continue
        try:
            v = float(p.stem[p.stem.rfind("=") + 1:])
        except ValueError:
            continue
        if v <= best_v:
            best, best_v = p, v
    if best is None:
        log.warning("%s: no checkpoint name carries a loss value; taking the latest", ckdir)
        return ckpts[-1]
    return best


def _prefix_of(key: str) -> str:
    for p in SKIP_PREFIXES:
        if key.startswith(p):
            return p
    return ".".join(key.split(".")[:2]) + "."


def map_state_dict(net: EmocaEncoders, sd: dict[str, torch.Tensor], where: str) -> tuple[OrderedDict, dict]:
    """Checkpoint keys -> our module's keys, strictly for the parts we implement.

    Returns (state dict for `net`, {skipped prefix: n keys}). Raises EmocaError listing every
    missing, mis-shaped or unexpected key under deca.E_flame / deca.E_expression."""
    expected = net.state_dict()
    own_roots = tuple(OWN_PREFIX + m + "." for m in OWN_MODULES)
    out: OrderedDict = OrderedDict()
    skipped: dict[str, int] = {}
    unexpected, misshaped, bad_shape = [], [], set()
    for k, v in sd.items():
        if k.startswith(own_roots):
            ours = k[len(OWN_PREFIX):]
            if ours not in expected:
                unexpected.append(k)
            elif tuple(v.shape) != tuple(expected[ours].shape):
                misshaped.append(f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[ours].shape)}")
                bad_shape.add(ours)
            else:
                out[ours] = v
        else:
            p = _prefix_of(k)
            skipped[p] = skipped.get(p, 0) + 1
    missing = [OWN_PREFIX + k for k in expected if k not in out and k not in bad_shape]
    if missing or misshaped or unexpected:
        parts = [f"{where}: checkpoint does not match the EMOCA encoders of its cfg.yaml"]
        if missing:
            parts.append(f"missing keys ({len(missing)}): " + ", ".join(missing[:20])
                         + (" ..." if len(missing) > 20 else ""))
        if misshaped:
            parts.append(f"mis-shaped keys ({len(misshaped)}): " + "; ".join(misshaped[:20]))
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): " + ", ".join(unexpected[:20]))
        raise EmocaError("\n  ".join(parts))
    return out, skipped


# ----------------------------------------------------------------------------- model

def resolve_device(device: str = "auto") -> torch.device:
    if device in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    d = torch.device(device)
    if d.type == "cuda" and not torch.cuda.is_available():
        raise EmocaError(f"expressions.device = {device!r} but CUDA is not available")
    return d


@dataclass
class EmocaModel:
    net: EmocaEncoders
    spec: EmocaSpec
    device: torch.device
    folder: Path
    checkpoint: Path
    skipped: dict[str, int] = field(default_factory=dict)
    checkpoint_id: str = ""

    def versions(self) -> dict[str, Any]:
        return {"emoca_folder": self.folder.name, "emoca_checkpoint": str(self.checkpoint.relative_to(self.folder))
                if self.checkpoint.is_relative_to(self.folder) else str(self.checkpoint),
                "emoca_checkpoint_id": self.checkpoint_id, "exp_deca_jaw_pose": self.spec.exp_jaw_pose,
                "exp_deca_global_pose": self.spec.exp_global_pose, "torch": torch.__version__}

    @torch.inference_mode()
    def predict(self, crops: np.ndarray | torch.Tensor, batch_size: int = 64, precision: str = "bf16",
                channels_last: bool = True) -> dict[str, np.ndarray]:
        """crops: (N, H, W, 3) uint8 RGB (or float in [0, 1]) -> {shape, tex, exp, pose, cam, light}
        float32 arrays (N, n). On CUDA: autocast in `precision` and channels-last; CPU runs fp32."""
        n = len(crops)
        out: dict[str, list[np.ndarray]] = {k: [] for k in CODE_ORDER}
        cuda = self.device.type == "cuda"
        amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision) if cuda else None
        for i in range(0, n, batch_size):
            x = crops[i:i + batch_size] if torch.is_tensor(crops) else torch.from_numpy(
                np.ascontiguousarray(crops[i:i + batch_size]).copy())  # copy: mmap'd crops are read-only
            x = x.to(self.device, non_blocking=True)
            x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
            x = x.permute(0, 3, 1, 2)
            if x.shape[-1] != IMAGE_SIZE or x.shape[-2] != IMAGE_SIZE:
                x = nn.functional.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear",
                                              align_corners=False, antialias=True)
            x = x.contiguous(memory_format=torch.channels_last) if (cuda and channels_last) else x.contiguous()
            with torch.autocast("cuda", dtype=amp, enabled=amp is not None):
                codes = self.net(x)
            for k in CODE_ORDER:
                out[k].append(codes[k].float().cpu().numpy())
        return {k: (np.concatenate(v) if v else np.zeros((0, getattr(self.spec, f"n_{k}")), np.float32))
                for k, v in out.items()}


def load_emoca(folder: str | os.PathLike, device: str | torch.device = "auto", stage: str = "detail",
               checkpoint: str = "best", channels_last: bool = True) -> EmocaModel:
    """Build our encoders from `folder/cfg.yaml` and load the chosen Lightning checkpoint strictly."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise EmocaError(f"EMOCA model folder {folder} does not exist (expressions.emoca_path; see "
                         "docs/expressions.md)")
    spec, _ = read_cfg(folder, stage)
    ckpt_path = find_checkpoint(folder, stage, checkpoint)
    sd = load_checkpoint_weights(ckpt_path)
    net = EmocaEncoders(spec)
    mapped, skipped = map_state_dict(net, sd, str(ckpt_path))
    net.load_state_dict(mapped, strict=True)
    for p, n in sorted(skipped.items()):
        log.info("EMOCA %s: skipped %d keys under %r (not needed for codes)", ckpt_path.name, n, p)
    unknown = {p: n for p, n in skipped.items() if p not in SKIP_PREFIXES}
    if unknown:
        log.warning("EMOCA %s: keys outside the documented prefixes were ignored: %s", ckpt_path.name, unknown)
    dev = torch.device(device) if isinstance(device, torch.device) else resolve_device(device)
    net = net.eval().to(dev)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed 224x224 batches: let cuDNN pick its fastest kernels
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
    st = ckpt_path.stat()
    ck_id = hashlib.sha256(f"{ckpt_path.name}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:16]
    return EmocaModel(net, spec, dev, folder, ckpt_path, skipped, ck_id)


# ----------------------------------------------------------------------------- backend

_MODELS: dict[tuple, EmocaModel] = {}
_MODELS_LOCK = threading.Lock()


def cached_model(folder: str, device: str, stage: str, checkpoint: str, channels_last: bool) -> EmocaModel:
    """One loaded model per (folder, device, stage, checkpoint) and process: segments share it."""
    key = (str(Path(folder).expanduser().resolve()), str(resolve_device(device)), stage, checkpoint, channels_last)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = load_emoca(folder, device, stage, checkpoint, channels_last)
        return _MODELS[key]


class Flame53Backend(Backend):
    """flame53 = EMOCA v2 exp[:50] + jaw pose (pose[3:6]), EmoAva's 53 columns."""

    name = "flame53"
    code_space = "flame53"
    needs_crops = True

    def __init__(self, cfg):
        if not cfg.emoca_path:
            raise ExpressionsSetupError(
                "backend flame53 needs an EMOCA v2 model folder: set expressions.emoca_path (e.g. "
                "--set expressions.emoca_path=/path/to/EMOCA_v2_lr_mse_20); see docs/expressions.md for "
                "registration and the folder layout, or use expressions.backend=arkit52")
        if not Path(cfg.emoca_path).expanduser().is_dir():
            raise ExpressionsSetupError(f"expressions.emoca_path {cfg.emoca_path!r} is not a folder "
                                        "(see docs/expressions.md)")
        self.cfg = cfg

    @property
    def model(self) -> EmocaModel:
        c = self.cfg
        return cached_model(c.emoca_path, c.device, c.emoca_stage, c.emoca_checkpoint, c.channels_last)

    def versions(self) -> dict:
        return {**self.model.versions(), "precision": self.cfg.precision, "device": str(self.model.device)}

    def encode(self, track: dict[str, np.ndarray], crops: np.ndarray | None = None) -> BackendOutput:
        if crops is None:
            raise ValueError("flame53 needs the 224x224 face crops of the track")
        n = len(crops)
        valid = np.asarray(track["valid"], bool)[:n] if "valid" in track else np.ones(n, bool)
        out = self.model.predict(crops, self.cfg.batch_size, self.cfg.precision, self.cfg.channels_last)
        codes = np.concatenate([out["exp"][:, :50], out["pose"][:, 3:6]], axis=1).astype(np.float32)
        codes[~valid] = np.nan
        extra = {"global_pose": out["pose"][:, :3], "shape": out["shape"], "cam": out["cam"],
                 "exp_full": out["exp"]}
        return BackendOutput(codes, valid & np.isfinite(codes).all(axis=1), extra)


# ----------------------------------------------------------------------------- test/benchmark support

def model_cfg_dict(jaw: bool = True, global_pose: bool = False, n_exp: int = 50, deca_class: str = "ExpDECA"
                   ) -> dict:
    """The `model:` section EMOCA v2's cfg.yaml carries for the keys we read (plus context keys)."""
    return {"deca_class": deca_class, "expression_backbone": "deca_clone", "exp_deca_jaw_pose": jaw,
            "exp_deca_global_pose": global_pose, "e_flame_type": "ResnetEncoder", "n_shape": 100, "n_tex": 50,
            "n_exp": n_exp, "n_pose": 6, "n_cam": 3, "n_light": 27, "n_detail": 128, "image_size": 224,
            "uv_size": 256, "use_texture": True, "detail_conditioning": ["jawpose", "expression", "detail"],
            "background_from_input": True, "useSeg": "rend", "mode": "detail", "train_coarse": False}


def write_random_emoca_folder(folder: str | os.PathLike, *, jaw: bool = True, global_pose: bool = False,
                              n_exp: int = 50, seed: int = 0, drop: tuple[str, ...] = (),
                              stage: str = "detail") -> Path:
    """Write a model folder in EMOCA's layout with random weights: cfg.yaml (coarse + detail sections)
    and `{stage}/checkpoints/deca-epoch=03-val_loss/dataloader_idx_0=9.44489288.ckpt`, a Lightning-style
    dict whose `state_dict` has EMOCA's key names and shapes for the encoders, representative keys of
    the skipped parts, minus the keys in `drop`. Returns the checkpoint path."""
    folder = Path(folder)
    torch.manual_seed(seed)
    m = model_cfg_dict(jaw, global_pose, n_exp)
    spec = EmocaSpec.from_model_cfg(m, "random")
    net = EmocaEncoders(spec)
    with torch.no_grad():  # non-trivial BN statistics so a loader that ignores buffers would be caught
        for mod in net.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.8, 1.2)
                mod.weight.uniform_(0.2, 0.5)
    sd: OrderedDict = OrderedDict((OWN_PREFIX + k, v.clone()) for k, v in net.state_dict().items())
    g = torch.Generator().manual_seed(seed + 1)
    sd["deca.E_detail.encoder.conv1.weight"] = torch.randn(64, 3, 7, 7, generator=g)
    sd["deca.E_detail.layers.0.weight"] = torch.randn(1024, 2048, generator=g) * 0.01
    sd["deca.E_detail.layers.2.weight"] = torch.randn(128, 1024, generator=g) * 0.01
    sd["deca.D_detail.l1.0.weight"] = torch.randn(128 * 8 * 8, 128 + n_exp + 3, generator=g) * 0.01
    sd["deca.flame.faces_tensor"] = torch.zeros(9976, 3, dtype=torch.long)
    sd["deca.flame.v_template"] = torch.randn(5023, 3, generator=g) * 0.1
    sd["deca.uv_face_eye_mask"] = torch.ones(1, 1, 256, 256)
    sd["deca.fixed_uv_dis"] = torch.zeros(256, 256)
    sd["emonet_loss.emonet.conv1.weight"] = torch.randn(64, 3, 7, 7, generator=g)
    for k in drop:
        sd.pop(k)
    ckpt = {"epoch": 3, "global_step": 12000, "pytorch-lightning_version": "1.4.9", "state_dict": sd,
            "callbacks": {"ModelCheckpoint": {"best_model_score": torch.tensor(9.44489288),
                                              "best_model_path": "deca-epoch=03.ckpt"}},
            "optimizer_states": [], "lr_schedulers": []}
    ck = folder / stage / "checkpoints" / "deca-epoch=03-val_loss" / "dataloader_idx_0=9.44489288.ckpt"
    ck.parent.mkdir(parents=True, exist_ok=True)
    from pipeline.atomic import atomic_path, write_text

    with atomic_path(ck) as tmp:
        torch.save(ckpt, tmp)
    cfg = {s: {"model": {**m, "mode": s}, "learning": {"checkpoint_after_training": "best"},
               "inout": {"checkpoint_dir": f"/path/to/{folder.name}/{s}/checkpoints"}}
           for s in ("coarse", "detail")}
    write_text(folder / "cfg.yaml", yaml.safe_dump(cfg, sort_keys=False))
    return ck


__all__ = ["EmocaError", "EmocaSpec", "EmocaEncoders", "EmocaModel", "Regressor", "SKIP_PREFIXES", "load_emoca",
           "find_checkpoint", "load_checkpoint_weights", "map_state_dict", "read_cfg", "resolve_device",
           "Flame53Backend", "cached_model", "write_random_emoca_folder", "model_cfg_dict"]
