"""Expression backend settings (extract/expressions/)."""
from __future__ import annotations

from typing import Literal

from pipeline.config._base import F, Section


class ExpressionsConfig(Section):
    backend: Literal["arkit52", "flame53"] = F("arkit52", "arkit52 needs no registration; flame53 needs EMOCA v2 weights")
    emoca_path: str = F("", "folder of an EMOCA v2 model (cfg.yaml + checkpoints/*.ckpt), for flame53")
    device: str = F("auto", "torch device for flame53: auto = cuda when available, else cpu")
    batch_size: int = F(64, "frames per network batch for flame53")
