"""Expression backend settings (extract/expressions/)."""
from __future__ import annotations

from typing import Literal

from pipeline.config._base import F, Section


class ExpressionsConfig(Section):
    # backend
    backend: Literal["arkit52", "flame53"] = F("arkit52", "arkit52 needs no registration; flame53 needs EMOCA v2 weights")
    emoca_path: str = F("", "folder of an EMOCA v2 model (cfg.yaml + detail/checkpoints/*.ckpt), for flame53",
                        local_only=True)
    emoca_stage: Literal["detail", "coarse"] = F(
        "detail", "cfg.yaml section and checkpoint folder to load; EMOCA's demos load the detail stage")
    emoca_checkpoint: str = F(
        "best", "'best' (lowest val loss in the file name, as EMOCA picks), 'latest', or a .ckpt file name")
    device: str = F("auto", "torch device for flame53: auto = cuda when available, else cpu")
    batch_size: int = F(64, "frames per network batch for flame53", ge=1)
    precision: Literal["bf16", "fp16", "fp32"] = F(
        "fp32", "CUDA dtype: fp32 as EMOCA runs; bf16 autocast (~2x the throughput) is an option whose error "
                "against fp32 benchmarks/bench_expressions.py reports; the CPU always runs fp32")
    channels_last: bool = F(True, "NHWC convolutions use tensor cores better on CUDA; ignored on CPU")
    # flame53 crops when the faces entry has no crops.npy
    crop_size: int = F(224, "DECA/EMOCA encoders take 224x224 crops", ge=32)
    crop_scale: float = F(1.25, "DECA: the square crop is 1.25 x 1.1 x mean(w, h) of the landmark box (head fits)",
                          gt=0)
    decode_max_side: int = F(0, "cap on the decoded frame side for cropping (0 = original size: sharper crops)", ge=0)
    # temporal processing
    fps: float = F(25.0, "dataset frame rate codes are resampled to (0 = keep the track's rate); EmoAva is ~24-25",
                   ge=0)
    max_gap: int = F(5, "fill gaps of at most this many frames by linear interpolation (0.2 s at 25 fps); longer "
                        "gaps stay missing", ge=0)
    trim_ends: bool = F(True, "drop leading/trailing frames without a usable code: they carry no expression, and "
                              "NaN ends would make assembly reject the whole sample")
    smoothing: Literal["none", "savgol", "one_euro"] = F(
        "savgol", "per-frame regressors jitter; Savitzky-Golay keeps peaks, one-euro is causal")
    savgol_window: int = F(7, "Savitzky-Golay window in frames (odd): ~0.28 s at 25 fps, below a syllable", ge=3)
    savgol_order: int = F(2, "Savitzky-Golay polynomial order: 2 keeps onsets without ringing", ge=1)
    one_euro_min_cutoff: float = F(1.0, "one-euro minimum cutoff (Hz): lower = smoother at rest", gt=0)
    one_euro_beta: float = F(0.5, "one-euro speed coefficient: at 0.5 a code moving 5 units/s gets a ~3.5 Hz "
                                               "cutoff, enough for speech", ge=0)
    one_euro_d_cutoff: float = F(1.0, "one-euro cutoff (Hz) of the derivative filter (the paper's default)", gt=0)
    # arkit52 linear rig
    rig_alpha: float = F(1e-3, "ridge penalty of the blendshape -> landmark-offset map (canonical units, ~unit RMS)",
                         ge=0)
    rig_neutral_quantile: float = F(
        0.1, "frames with the lowest total blendshape activity (this share) define the neutral mesh", gt=0, le=1)
    rig_frontal_deg: float = F(20.0, "frames within this yaw/pitch of frontal build the alignment reference", gt=0)
    rig_max_frames: int = F(20000, "frames sampled for the rig fit: more adds time, not accuracy", ge=52)
