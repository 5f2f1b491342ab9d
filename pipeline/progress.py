"""Progress bars for long work (the stage mappers, assembly, the report, test media): tqdm on stderr,
off when WORDSMILE_NO_PROGRESS=1 (tests, CI logs)."""
from __future__ import annotations

import os
from typing import Iterable, TypeVar

T = TypeVar("T")


def bar(total: int, desc: str, unit: str = "item"):
    """A manual bar (`.update()`, `.close()`) for work whose items finish out of order."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=True,
                disable=total == 0 or os.environ.get("WORDSMILE_NO_PROGRESS") == "1")


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "item") -> Iterable[T]:
    from tqdm.auto import tqdm

    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    return tqdm(items, total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=True,
                disable=total == 0 or os.environ.get("WORDSMILE_NO_PROGRESS") == "1")
