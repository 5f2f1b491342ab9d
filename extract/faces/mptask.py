"""What the MediaPipe task wrappers share: closing the task (mediapipe 1.2.2 prints a TypeError from
`__del__` at exit for unclosed tasks) and one instance per thread and setting (loading costs far more
than a frame, and task objects are not safe to share between threads)."""
from __future__ import annotations

import atexit
import threading
from typing import Callable, TypeVar


class TaskOwner:
    """Base of the wrappers: owns `self._task`, closes it once, usable as a context manager."""

    _task = None

    def close(self) -> None:
        if self._task is not None:
            self._task.close()
            self._task = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


T = TypeVar("T", bound=TaskOwner)


class PerThread:
    """Lazily built instances keyed by (settings, thread), all closed at interpreter exit."""

    def __init__(self):
        self._lock = threading.Lock()
        self._items: dict = {}
        atexit.register(self.close_all)

    def get(self, settings: tuple, factory: Callable[[], T]) -> T:
        key = (*settings, threading.get_ident())
        with self._lock:
            if key not in self._items:
                self._items[key] = factory()
            return self._items[key]

    def close_all(self) -> None:
        with self._lock:
            for item in self._items.values():
                item.close()
            self._items.clear()
