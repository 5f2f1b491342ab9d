"""Expression backends: one interface, a registry, and the choice made in config (`expressions.backend`).

A backend turns a face track (the faces stage's `track.npz` arrays, plus 224x224 crops when it needs
pixels) into per-frame codes (N, D) in a named code space (DESIGN.md section 3). Frames the backend
could not measure are NaN in `codes` and False in `valid`; temporal processing happens afterwards
(temporal.py), the same for every backend."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


class ExpressionsSetupError(ValueError):
    """A configuration that cannot work for any item (unknown backend, missing EMOCA path)."""


@dataclass
class BackendOutput:
    codes: np.ndarray                   # (N, D) float32, NaN where not measured
    valid: np.ndarray                   # (N,) bool: measured from a real face
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # per-frame side outputs (N, k)


class Backend(ABC):
    name: str = ""
    code_space: str = ""
    needs_crops: bool = False

    @property
    @abstractmethod
    def dims(self) -> list[str]:
        """Names of the D code columns, in order."""

    @property
    def D(self) -> int:
        return len(self.dims)

    @property
    @abstractmethod
    def jaw_dims(self) -> list[int]:
        """Indices of the jaw columns (CTEG weights them in its loss)."""

    @abstractmethod
    def versions(self) -> dict:
        """Extractor and model versions recorded with every output."""

    @abstractmethod
    def encode(self, track: dict[str, np.ndarray], crops: np.ndarray | None = None) -> BackendOutput:
        """Codes at the track's frames. `crops` (N, 224, 224, 3) uint8 when `needs_crops`."""

    def describe(self) -> dict:
        return {"backend": self.name, "code_space": self.code_space, "D": self.D, "dims": self.dims,
                "jaw_dims": self.jaw_dims}


def _arkit(cfg) -> Backend:
    from extract.expressions.arkit import ArkitBackend

    return ArkitBackend()


def _flame(cfg) -> Backend:
    from extract.expressions.emoca import Flame53Backend

    return Flame53Backend(cfg)


BACKENDS: dict[str, Callable[..., Backend]] = {"arkit52": _arkit, "flame53": _flame}


def get_backend(name: str | None, cfg) -> Backend:
    """The backend `name` (default: cfg.backend) configured by `cfg` (an ExpressionsConfig)."""
    name = name or cfg.backend
    if name not in BACKENDS:
        raise ExpressionsSetupError(f"unknown expression backend {name!r} (expressions.backend); "
                                    f"choose one of {sorted(BACKENDS)}")
    return BACKENDS[name](cfg)
