"""Model stage settings (model/)."""
from __future__ import annotations

from pipeline.config._base import F, Section


class ModelConfig(Section):
    preset: str = F("small", "small trains on a CPU in minutes; paper is EmoAva's d_model 768 setting")
    text_encoder: str = F("", "local BERT folder; empty = the packaged all-MiniLM-L6-v2")
    seed: int = F(0, "seed for reproducible training and sampling")
