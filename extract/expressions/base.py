"""The expression-backend interface (the implementations and the choice made in config are in backends.py).

A backend turns a face track (the faces stage's track arrays, pipeline/formats/track.py, plus 224x224 crops when it needs
pixels) into per-frame codes (N, D) in a named code space (pipeline/codespaces.py). Frames the backend
could not measure are NaN in `codes` and False in `valid`; temporal processing happens afterwards
(temporal.py), the same for every backend."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
import numpy as np

from pipeline.codespaces import CodeSpace, code_space
from pipeline.stage import StageSetupError


class ExpressionsSetupError(StageSetupError, ValueError):
    """A configuration that cannot work for any item (unknown backend, missing EMOCA path)."""


@dataclass
class BackendOutput:
    codes: np.ndarray                   # (N, D) float32, NaN where not measured
    valid: np.ndarray                   # (N,) bool: measured from a real face
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # per-frame side outputs (N, k)


class Backend(ABC):
    name: str = ""
    code_space: str = ""          # a name in pipeline.codespaces: dims, jaw dims, bounds come from there
    needs_crops: bool = False

    @property
    def space(self) -> CodeSpace:
        return code_space(self.code_space)

    @property
    def dims(self) -> list[str]:
        """Names of the D code columns, in order."""
        return list(self.space.dims)

    @property
    def D(self) -> int:
        return self.space.D

    @property
    def jaw_dims(self) -> list[int]:
        """Indices of the jaw columns (CTEG weights them in its loss)."""
        return list(self.space.jaw_dims)

    @abstractmethod
    def versions(self) -> dict:
        """Extractor and model versions recorded with every output."""

    @abstractmethod
    def encode(self, track: dict[str, np.ndarray], crops: np.ndarray | None = None) -> BackendOutput:
        """Codes at the track's frames. `crops` (N, 224, 224, 3) uint8 when `needs_crops`."""

    def describe(self) -> dict:
        return {"backend": self.name, "code_space": self.code_space, "D": self.D, "dims": self.dims,
                "jaw_dims": self.jaw_dims}
