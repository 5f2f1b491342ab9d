"""Face stage: which face, if any, an utterance belongs to (see docs/faces.md).

Modules: detect (full-range BlazeFace), landmarks (Face Landmarker on face crops), shots (cuts on the
decoded frames), tracks (online tracker, gap bridging, smoothing), select (strict / dominant / speaker
policies), quality (size, pose, blur, jitter), crops (DECA/EMOCA crops), stage (the stage function).
"""

# The Face Landmarker's 52 blendshape categories, in the order the model emits them (index 0 is
# `_neutral`); `blendshapes` arrays in track.npz use this column order.
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
assert len(BLENDSHAPE_NAMES) == 52
BLENDSHAPE_INDEX = {n: i for i, n in enumerate(BLENDSHAPE_NAMES)}

__all__ = ["BLENDSHAPE_NAMES", "BLENDSHAPE_INDEX"]
