"""The one owner of each on-disk format: every reader and writer of these files goes through here, and
each reader validates what it reads and names the file and field when it is wrong.

| module | files |
| --- | --- |
| `track.py` | a faces-stage entry: the kept track, its crops, its quality figures |
| `codes.py` | an expressions-stage entry: per-frame codes, their description, side outputs |
| `rig.py` | `rig.npz`, the arkit52 linear rig shipped with a dataset |
| `dataset.py` | a dataset folder: EmoAva stage-1 pickles, mean/std, `data/{train,validation,test}.parquet` (`read_samples`), `dataset.json` |
| `release.py` | a release: `SHA256SUMS` and the one restricted unpickler |
"""
from __future__ import annotations

from pathlib import Path


class FormatError(ValueError):
    """A file of one of our formats is missing or malformed. `missing` tells the two apart, so a stage can
    record `input.missing_file` for the first and its own reason for the second."""

    def __init__(self, path: str | Path, problem: str, missing: bool = False):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem, self.missing = Path(path), problem, missing
