"""Model stage settings (model/): CTEG training, sampling, evaluation and rendering.

Architecture sizes and the optimisation schedule come from a preset (`model/presets.py`: `small`,
`paper`); the `None` fields here override the preset's value when set."""
from __future__ import annotations

from typing import Optional

from pipeline.config._base import F, Section


class ModelConfig(Section):
    preset: str = F("small", "small trains on a CPU in minutes; paper is EmoAva's d_model 768 setting")
    text_encoder: str = F("", "local BERT folder; empty = the packaged all-MiniLM-L6-v2", local_only=True)
    seed: int = F(0, "seed for reproducible training and sampling")
    # data
    normalize: bool = F(True, "train on (x - mean) / std of the train split; EmoAva's reference trains on raw values")
    max_frames: int = F(253, "EmoAva's trainer fits BOS + 253 frames + EOS; longer sequences are truncated", ge=2)
    max_text_tokens: int = F(64, "EmoAva texts have at most 66 words; longer token lists are truncated", ge=4)
    text_cache: str = F("", "folder for cached token states; empty = DATASET/.cache/text-states",
                         local_only=True)
    # optimisation (None = the preset's value)
    epochs: Optional[int] = F(None, "passes over the train split", ge=1)
    batch_size: Optional[int] = F(None, "sequences per step", ge=1)
    lr_mul: Optional[float] = F(None, "Noam schedule multiplier (EmoAva: 2.0)", gt=0)
    warmup_steps: Optional[int] = F(None, "Noam warm-up steps (EmoAva: 4000 at batch 256)", ge=1)
    max_steps: int = F(0, "stop after this many optimiser steps; 0 = run all epochs", ge=0)
    time_limit_s: float = F(0.0, "stop training after this many seconds (the demo uses it); 0 = no limit", ge=0)
    grad_clip: float = F(1.0, "clip the global gradient norm; the per-step KL can spike early in training", gt=0)
    amp: bool = F(True, "bfloat16 autocast on CUDA (no effect on CPU); the paper preset is 4x faster with it")
    threads: int = F(2, "torch CPU threads; development machines have 2 shared cores", ge=1)
    eval_every: int = F(200, "optimiser steps between dev evaluations and checkpoints (also at the end)", ge=1)
    # loss
    jaw_weight: float = F(5.0, "EmoAva weights the jaw dims x5 in the per-frame distance: jaw motion is small but visible", gt=0)
    kl_weight: float = F(1.0, "weight of the per-step KL(posterior || prior); EmoAva uses 1", ge=0)
    prior_weight: float = F(1.0, "weight of the one-step prior loss (decode from the prior); EmoAva uses it against collapse", ge=0)
    stop_weight: float = F(1.0, "weight of the learned stop (end-of-sequence) loss", ge=0)
    # sampling and evaluation
    temperature: float = F(1.0, "scale of the prior noise when sampling; 0 = prior mean (deterministic)", ge=0)
    min_frames: int = F(4, "generated sequences are at least this long before the stop may fire", ge=1)
    ppl_sigma: float = F(0.2, "EmoAva's continuous-perplexity sigma (evaluate.py)", gt=0)
    ppl_delta: float = F(0.8, "EmoAva's continuous-perplexity half box width delta", gt=0)
    eval_samples: int = F(5, "generations per text for diversity/multimodality (EmoAva decodes 5)", ge=1)
    eval_max_texts: int = F(0, "evaluate at most this many texts of the split; 0 = all", ge=0)
    fd_normalized: bool = F(True, "Frechet distance on std-normalised codes so no dimension dominates", )
    # rendering
    render_size: int = F(384, "height in pixels of one rendered face panel", ge=64)
