"""Assembly, filter and release settings (dataset/assemble/, dataset/release.py)."""
from __future__ import annotations

from pydantic import field_validator

from pipeline.config._base import F, Section


class AssembleConfig(Section):
    # frame-count and validity filters
    min_frames: int = F(8, "shorter sequences carry too little motion to learn from", ge=1)
    max_frames: int = F(253, "EmoAva's trainer pads to 256 = BOS + 253 + EOS and silently truncates longer", ge=1)
    min_valid_ratio: float = F(0.5, "below this share of frames with a real (not interpolated) face, codes are mostly guessed",
                               ge=0.0, le=1.0)
    use_smoothed: bool = F(True, "temporally smoothed codes remove per-frame regressor jitter (raw codes stay in the cache)")
    # text filters
    max_words: int = F(66, "EmoAva's longest text has 66 words; longer spans are usually merged captions", ge=1)
    # code sanity
    code_bounds: dict[str, list[float]] = F(
        {"arkit52": [-0.1, 1.1], "flame53": [-12.0, 12.0]},
        "per code space [min, max]: ARKit scores live in [0, 1] (smoothing overshoots by a few hundredths); "
        "FLAME coefficients beyond ±12 are fitting failures")
    # splits and statistics
    split_ratios: list[float] = F([0.8, 0.1, 0.1], "train/dev/test by source video when a source has no split")
    split_salt: str = F("", "changing it reshuffles the hashed split of every video; keep it fixed across versions")
    std_floor: float = F(1e-4, "floor for stage1_std so constant dims do not divide by zero", gt=0)
    pickle_protocol: int = F(3, "readable by every Python 3 and (with numpy.core names) every numpy; fixed so "
                                "the stage-1 bytes are reproducible", ge=3, le=5)
    # card and report
    language: list[str] = F(["en"], "ISO 639-1 codes of the texts, written into the dataset card")
    report_samples: int = F(6, "sample utterances shown with code curves (and thumbnails) in report.html", ge=0)
    thumbnails: bool = F(True, "decode frames for the report: kept faces with box and landmarks, multi-face "
                                "overviews, rejected examples, previews (needs the source video)")
    report_previews: int = F(3, "shown samples that also get a short animated preview (3 s, ~100 KB each)", ge=0)
    thumbnail_size: int = F(160, "longer side in pixels of a report thumbnail", ge=32, le=1024)

    @field_validator("split_ratios")
    @classmethod
    def _ratios(cls, v: list[float]) -> list[float]:
        if len(v) != 3 or any(r < 0 for r in v) or abs(sum(v) - 1.0) > 1e-6:
            raise ValueError("split_ratios must be three non-negative numbers (train, dev, test) summing to 1")
        return v

    @field_validator("code_bounds")
    @classmethod
    def _bounds(cls, v: dict[str, list[float]]) -> dict[str, list[float]]:
        for k, b in v.items():
            if len(b) != 2 or not b[0] < b[1]:
                raise ValueError(f"code_bounds[{k!r}] must be [min, max] with min < max")
        return v
