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
    amp: bool = F(True, "mixed precision on CUDA (no effect on CPU); the paper preset is 4x faster with it")
    amp_dtype: str = F("bf16", "bf16: autocast in bfloat16; fp16: float16 autocast with a GradScaler (GPUs without bf16)",
                       pattern="^(bf16|fp16)$")
    workers: int = F(-1, "DataLoader worker processes; -1 = 2 on CUDA, 0 on CPU (the cores are busy training)", ge=-1)
    threads: int = F(2, "torch CPU threads; development machines have 2 shared cores", ge=1)
    log_every: int = F(10, "optimiser steps between training log points (log.csv, TensorBoard): one host sync each",
                       ge=1)
    eval_every: int = F(200, "optimiser steps between dev evaluations and checkpoints (also at the end)", ge=1)
    # loss
    jaw_weight: float = F(5.0, "EmoAva weights the jaw dims x5 in the per-frame distance: jaw motion is small but visible", gt=0)
    kl_weight: float = F(1.0, "weight of the per-step KL(posterior || prior), a mean over latent dims as EmoAva's", ge=0)
    kl_free_bits: float = F(0.05, "nats per latent dim (per frame) the KL does not charge: keeps the latent in use", ge=0)
    kl_anneal_steps: int = F(200, "the KL weight rises linearly from 0 over these first steps; 0 = full from the start", ge=0)
    length_weight: float = F(0.1, "weight of the length head's log-length NLL", ge=0)
    latent: Optional[str] = F(None, "head: one latent fused in the output head; layer: EmoAva's per-layer latent "
                              "in the residual stream (None = the preset's)", pattern="^(head|layer)$")
    d_latent: Optional[int] = F(None, "latent width (None = the preset's)", ge=1)
    out_noise: Optional[float] = F(None, "std of noise added to each layer's output (EmoAva's -second_sample one: "
                                   "1.6487); None = the preset's (off)", ge=0)
    prior_weight: float = F(1.0, "weight of the one-step prior loss (decode from the prior); EmoAva uses it against collapse", ge=0)
    stop_weight: float = F(1.0, "weight of the learned stop (end-of-sequence) loss", ge=0)
    # sampling and evaluation
    temperature: float = F(1.0, "scale of the prior noise when sampling; 0 = prior mean (deterministic)", ge=0)
    stop: str = F("length", "length: draw each sequence's length from the length head; hazard: the per-frame stop head",
                  pattern="^(length|hazard)$")
    min_frames: int = F(4, "generated sequences are at least this long before the stop may fire", ge=1)
    ppl_sigma: Optional[float] = F(None, "continuous-perplexity sigma; None = the code space's (flame53: EmoAva's 0.2)", gt=0)
    ppl_delta: Optional[float] = F(None, "continuous-perplexity half box width; None = the code space's (flame53: 0.8)", gt=0)
    eval_samples: int = F(5, "generations per text for diversity/multimodality (EmoAva decodes 5)", ge=1)
    eval_max_texts: int = F(0, "evaluate at most this many texts of the split; 0 = all", ge=0)
    fd_normalized: bool = F(True, "Frechet distance on std-normalised codes so no dimension dominates", )
    # rendering
    render_size: int = F(384, "height in pixels of one rendered face panel", ge=64)
