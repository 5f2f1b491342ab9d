"""The expression backends by name, and the one chosen in config (`expressions.backend`). Importing this
module imports neither torch nor mediapipe: each implementation is imported when it is asked for."""
from __future__ import annotations

from typing import Callable

from extract.expressions.base import Backend, ExpressionsSetupError


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
