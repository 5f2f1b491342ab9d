"""The code-space registry: what the D columns of a dataset mean.

Every part that needs to know something about a code space (its dimension names, which are jaw, the
range its values live in, how to render it, what the dataset card says, whether it needs a GPU) asks
here instead of re-deriving it from the space's name. The expression backends (extract/expressions/)
declare which space they produce; assemble, the report, the card, the model and the renderer read it.
"""
from __future__ import annotations

from dataclasses import dataclass

# The Face Landmarker's 52 blendshape categories in the order the model emits them (its
# face_blendshapes graph: `_neutral`, then alphabetical). `blendshapes` arrays of a face track and the
# arkit52 code columns use this order.
BLENDSHAPE_NAMES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight",
    "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight",
    "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)
BLENDSHAPE_INDEX = {n: i for i, n in enumerate(BLENDSHAPE_NAMES)}
FLAME53_DIMS: tuple[str, ...] = tuple(f"exp{i:02d}" for i in range(50)) + ("jaw_x", "jaw_y", "jaw_z")


@dataclass(frozen=True)
class CodeSpace:
    name: str
    dims: tuple[str, ...]                 # column names, in order
    jaw_dims: tuple[int, ...]             # columns CTEG weights as jaw (EmoAva: the jaw pose)
    bounds: tuple[float, float] | None    # the range every value lives in; None = unbounded
    renderer: str                         # "rig": the dataset's rig.npz; "flame": a user-supplied FLAME model
    needs_gpu: bool                       # practical only on a GPU (the regressor, not the format)
    card_text: str                        # the dataset card's sentence about the codes
    preview_dims: tuple[str, ...]         # the dims that move most visibly, for curves and previews

    @property
    def D(self) -> int:
        return len(self.dims)

    @property
    def jaw_names(self) -> tuple[str, ...]:
        return tuple(self.dims[i] for i in self.jaw_dims)

    def jaw_indices(self, dims: list[str] | tuple[str, ...]) -> list[int]:
        """Where this space's jaw dims sit in a given column list (a dataset's `dims`), by name."""
        return [i for i, d in enumerate(dims) if d in self.jaw_names]

    def index(self, name: str) -> int:
        try:
            return self.dims.index(name)
        except ValueError:
            raise KeyError(f"code space {self.name}: no dim {name!r} (dims: {', '.join(self.dims)})") from None


CODE_SPACES: dict[str, CodeSpace] = {
    "arkit52": CodeSpace(
        name="arkit52", dims=BLENDSHAPE_NAMES,
        jaw_dims=tuple(BLENDSHAPE_INDEX[n] for n in ("jawForward", "jawLeft", "jawOpen", "jawRight")),
        bounds=(0.0, 1.0), renderer="rig", needs_gpu=False,
        card_text="Codes are the 52 ARKit-style blendshape scores of the MediaPipe Face Landmarker (Google, "
                  "Apache-2.0), values in [0, 1].",
        preview_dims=("jawOpen", "mouthSmileLeft", "mouthSmileRight", "browInnerUp")),
    "flame53": CodeSpace(
        name="flame53", dims=FLAME53_DIMS, jaw_dims=(50, 51, 52), bounds=None, renderer="flame",
        needs_gpu=True,
        card_text="Codes are 50 FLAME expression coefficients + 3 jaw-pose values (axis-angle, radians) "
                  "regressed by EMOCA v2 (R. Daněček, M. J. Black, T. Bolkart, *EMOCA: Emotion Driven "
                  "Monocular Face Capture and Animation*, CVPR 2022) on the FLAME model (T. Li et al., "
                  "SIGGRAPH Asia 2017): exactly the code space of EmoAva.",
        preview_dims=("jaw_x", "exp00", "exp01", "exp02")),
}


def code_space(name: str) -> CodeSpace:
    """The registered code space `name`; a clear error for anything else."""
    try:
        return CODE_SPACES[name]
    except KeyError:
        raise KeyError(f"unknown code space {name!r}; known: {', '.join(sorted(CODE_SPACES))}") from None


__all__ = ["CodeSpace", "CODE_SPACES", "code_space", "BLENDSHAPE_NAMES", "BLENDSHAPE_INDEX", "FLAME53_DIMS"]
