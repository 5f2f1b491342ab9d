"""Face stage: which face, if any, an utterance belongs to (see docs/faces.md).

Modules: detect (full-range BlazeFace), landmarks (Face Landmarker on face crops), shots (cuts on the
decoded frames), tracks (online tracker, gap bridging, smoothing), select (strict / dominant / speaker
policies), quality (size, pose, blur, jitter), crops (DECA/EMOCA crops), stage (the stage function).
"""

# The 52 blendshape names (the column order of a track's `blendshapes`) are owned by the code-space registry.
from pipeline.codespaces import BLENDSHAPE_INDEX, BLENDSHAPE_NAMES

__all__ = ["BLENDSHAPE_NAMES", "BLENDSHAPE_INDEX"]
