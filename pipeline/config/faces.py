"""Face stage settings (extract/faces/). docs/faces.md explains how they are used."""
from __future__ import annotations

from typing import Literal

from pipeline.config._base import F, Section


class FacesConfig(Section):
    # models (extract/faces/model_files.py): empty = the verified copy in the user's model cache
    landmarker_path: str = F("", "local face_landmarker.task to install from; empty = cache, URL, PyPI wheel",
                             local_only=True)
    detector_path: str = F("", "local full-range face detector .tflite; empty = cache, URL, PyPI wheel",
                           local_only=True)

    # decoding
    analysis_fps: float = F(25.0, "frames analysed per second: EmoAva sources are ~24 fps")
    max_side: int = F(640, "longest side of analysed frames: full-range BlazeFace works at 640x360")

    # detection and tracking
    detect_every: int = F(5, "run the full-range detector every k frames (and after cuts / with no track): "
                             "new faces are found within 0.2 s, landmarks follow faces in between")
    detect_min_conf: float = F(0.5, "full-range BlazeFace score to accept a detection (MediaPipe default)")
    track_min_px: int = F(32, "ignore detections smaller than this (px at analysis size): the full-range "
                             "detector finds every real test face down to 28 px, and codes below 32 px are "
                             "poor (keep_min_px)")
    crop_scale: float = F(2.0, "landmarker input = this x the face box: the model expects a face ~half the crop")
    crop_px: int = F(256, "landmarker crop size: the model's own input is 256x256")
    landmark_mode: Literal["direct", "image", "video"] = F(
        "direct", "direct: the landmarker's models run directly (LiteRT) on the region MediaPipe's tracking "
                  "takes from the previous landmarks, about half the CPU of image; image: MediaPipe's IMAGE "
                  "mode on every crop (its short-range detector each frame; the landmarker before issue 19); video: "
                  "a MediaPipe VIDEO-mode task per track (benchmarks/bench_faces.py --fidelity compares them)")
    landmark_every: int = F(1, "landmark each track on every k-th frame only (direct mode); the frames between get "
                               "landmarks, blendshapes and pose interpolated from the measured ones around them "
                               "(the last k-1 of a track hold the last measurement). 1 = every frame (default): "
                               "benchmarks/bench_faces.py --fidelity reports the blendshape error of 2 and 3 "
                               "against it", ge=1)
    link_iou: float = F(0.3, "IoU linking a detection to a track (detector and landmark boxes differ in shape)")
    merge_iou: float = F(0.5, "two tracks overlapping this much follow the same face: keep the older")
    max_gap: int = F(12, "bridge up to this many frames without landmarks (0.5 s at 25 fps), interpolated and "
                         "marked invalid; longer gaps end the track")
    identity_max_jump: float = F(0.27, "split a track where its identity signature (colour pattern and skin "
                                       "chroma around rigid landmarks + their 3-D shape) jumps by more than "
                                       "this: Obama -> Biden without a detected cut measures 0.35, one real "
                                       "face panned/zoomed <= 0.08, generated talking faces <= 0.21 "
                                       "(docs/faces.md); 0 = off")
    box_smooth_sigma: float = F(3.0, "Gaussian sigma (frames) for the crop box, after gap filling (as inferno)")

    # shots
    shot_threshold: float = F(27.0, "mean |dHSV| (0-255) between consecutive frames that marks a cut "
                                    "(PySceneDetect ContentDetector default 27)")
    shot_min_len_s: float = F(0.6, "minimum shot length: flashes and fast pans are not cuts (a second cut "
                                   "within it is left to the identity check)")
    shot_preroll_frames: int = F(1, "frames decoded before the segment only for the cut detector, so a cut on "
                                    "the first frames of a segment is found (0 = none)", ge=0)

    # which face
    policy: Literal["strict", "dominant", "speaker"] = F(
        "speaker", "speaker keeps a single clear face like dominant and resolves two-shots by mouth-audio "
                   "correlation, rejecting only undecidable cases (strict = EmoAva, discards all two-shots)")
    dominant_min_cover: float = F(0.6, "dominant: the kept track is present in at least this share of frames")
    other_max_size_ratio: float = F(0.5, "dominant: other faces count as small below this x the main face size")
    other_max_cover: float = F(0.15, "dominant: other faces count as brief below this share of frames")
    speaker_min_cover: float = F(0.3, "speaker: tracks present in at least this share of frames compete")
    speaker_min_r: float = F(0.3, "speaker: winner's Pearson r (jawOpen vs loudness) must reach this")
    speaker_margin: float = F(0.2, "speaker: winner's r must beat the runner-up by this much")
    speaker_min_mouth_sd: float = F(0.02, "speaker: a face whose jawOpen moves less (standard deviation over its "
                                          "frames) cannot win: a still mouth's r is noise (talking faces "
                                          "measure 0.05-0.2)")
    speaker_max_lag: int = F(2, "speaker: allow this many frames audio/video offset (80 ms at 25 fps)")

    # quality of the kept track
    min_presence: float = F(0.75, "kept track must have landmarks in this share of the utterance's frames")
    min_coverage: float = F(0.9, "the kept face must span this share of the utterance's frames (first to last "
                                 "frame with landmarks): less means words without the face, silently trimmed")
    max_outside: float = F(0.05, "a frame is off-frame when more than this share of the face box or of the "
                                 "landmarks lies outside the picture")
    max_outside_frames: float = F(0.1, "reject when more than this share of the kept face's frames is off-frame")
    min_track_frames: int = F(12, "kept track needs this many frames with landmarks (~0.5 s)")
    keep_min_px: int = F(32, "median face size (landmark box px as analysed, i.e. as the landmarker sees "
                                  "it): on real photos the blendshape error grows slowly down to 32 px and "
                                  "fast below 28, where the detector also starts to miss faces (docs/faces.md)")
    max_abs_yaw: float = F(45.0, "median |yaw| (deg) above which blendshapes degrade (profile views)")
    max_abs_pitch: float = F(35.0, "median |pitch| (deg) limit")
    max_abs_roll: float = F(40.0, "median |roll| (deg) limit")
    min_sharpness: float = F(20.0, "median variance of the Laplacian of the 256px gray crop; below = blurred")
    max_jitter: float = F(0.05, "median landmark deviation from its 5-frame median, / face size: tracking noise")

    # outputs
    save_crops: bool = F(False, "also store DECA/EMOCA 224px crops (crops.npy) for a regressor")
    crop_max_side: int = F(1280, "decode size for crops: sharper than the analysis frames")
