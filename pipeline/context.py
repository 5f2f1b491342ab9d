"""What every stage function receives: the config, the workspace and its caches, the run folder."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.cache import StageCache
from pipeline.config import Config
from pipeline.workspace import Workspace


@dataclass
class StageContext:
    cfg: Config
    ws: Workspace
    run_dir: Path
    force: set[str] = field(default_factory=set)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("wordsmile"))
    _caches: dict = field(default_factory=dict, repr=False)

    def cache(self, stage: str, code_version: str, params=None) -> StageCache:
        """The stage's cache (one object per stage within this process; counts are per-item stats files,
        see pipeline/stage.py)."""
        k = (stage, code_version)
        if k not in self._caches:
            self._caches[k] = StageCache(self.ws, stage, code_version,
                                         params if params is not None else {},
                                         force=stage in self.force)
        return self._caches[k]
