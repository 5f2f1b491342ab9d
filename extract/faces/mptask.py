"""What the MediaPipe task wrappers share: closing the task (mediapipe 1.2.2 prints a TypeError from
`__del__` at exit for unclosed tasks), one instance per thread and setting (loading costs far more
than a frame, and task objects are not safe to share between threads), and a direct path to the
Tasks C API for the landmarker.

Why the direct path: mediapipe 1.2.2's Python API sends every call through a one-thread executor
(a thread hand-off per call) and turns each result into 478 landmark + 52 category Python objects;
together ~8-10% of the face stage. `DirectLandmarker` calls the same C functions of the same
libmediapipe.so on the calling thread and reads the result structs as numpy arrays. It uses
mediapipe's own ctypes declarations (so struct layouts follow the installed version) and is only
used when they are all present; otherwise the public API is used (`direct_available()`).
"""
from __future__ import annotations

import atexit
import ctypes
import threading
from typing import Callable, TypeVar

import numpy as np


def mp_image(frame: np.ndarray):
    import mediapipe as mp

    return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame, dtype=np.uint8))


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


# --- direct C API ------------------------------------------------------------------------------

_C: dict = {}


def _c_api():
    """(raw CDLL, face_landmarker module, landmark/category dtypes) or None when this mediapipe does
    not have the ctypes declarations the direct path needs."""
    if "api" in _C:
        return _C["api"]
    api = None
    try:
        from mediapipe.tasks.python.components.containers import category_c, landmark_c
        from mediapipe.tasks.python.core import mediapipe_c_bindings
        from mediapipe.tasks.python.vision import face_landmarker as fl

        raw = mediapipe_c_bindings.load_raw_library()
        for sig in fl._CTYPES_SIGNATURES:      # same argtypes as mediapipe's own wrapper sets
            f = getattr(raw, sig.func_name)
            f.argtypes, f.restype = sig.argtypes, sig.restype
        need = ("MpFaceLandmarkerDetectImage", "MpFaceLandmarkerDetectForVideo", "MpFaceLandmarkerCloseResult")
        lm_dt = _dtype(landmark_c.MpNormalizedLandmarkC, ("x", "y", "z"))
        cat_dt = _dtype(category_c.MpCategoryC, ("score",))
        if all(hasattr(raw, n) for n in need) and hasattr(fl, "MpFaceLandmarkerResultC"):
            api = (raw, fl, lm_dt, cat_dt)
    except Exception:       # another mediapipe layout: the public API is used instead
        api = None
    _C["api"] = api
    return api


def _dtype(struct, names: tuple) -> np.dtype:
    """numpy view of the float fields `names` of a ctypes struct (offsets and size from ctypes itself;
    numpy cannot convert the structs' char* members)."""
    for n in names:
        if dict(struct._fields_)[n] is not ctypes.c_float:
            raise TypeError(f"{struct.__name__}.{n} is not a float")
    return np.dtype({"names": list(names), "formats": ["<f4"] * len(names),
                     "offsets": [getattr(struct, n).offset for n in names], "itemsize": ctypes.sizeof(struct)})


def direct_available() -> bool:
    return _c_api() is not None


def _array(ptr, count: int, dtype: np.dtype) -> np.ndarray:
    """View of `count` C structs at `ptr` as a structured array (no Python object per element)."""
    addr = ctypes.cast(ptr, ctypes.c_void_p).value
    if not addr or count <= 0:
        return np.zeros(0, dtype)
    return np.frombuffer((ctypes.c_char * (count * dtype.itemsize)).from_address(addr), dtype)


class DirectLandmarker:
    """One mediapipe FaceLandmarker task called through the C API on the calling thread.

    `detect(image, t_ms=None)` -> list of (landmarks (478, 3) float32 normalised, blendshapes (52,)
    float32 or None, transform (4, 4) float32 or None), one per face, in the task's order. The task
    itself (created by mediapipe's public API) is closed by `close()`."""

    def __init__(self, task):
        raw, fl, lm_dt, cat_dt = _c_api()
        self._raw, self._fl, self._lm_dt, self._cat_dt = raw, fl, lm_dt, cat_dt
        self._task = task
        self._handle = task._handle

    def detect(self, image, t_ms: int | None = None) -> list:
        res = self._fl.MpFaceLandmarkerResultC()
        err = ctypes.c_char_p()
        if t_ms is None:
            st = self._raw.MpFaceLandmarkerDetectImage(self._handle, image._image_ptr, None, ctypes.byref(res),
                                                       ctypes.byref(err))
        else:
            st = self._raw.MpFaceLandmarkerDetectForVideo(self._handle, image._image_ptr, None, int(t_ms),
                                                          ctypes.byref(res), ctypes.byref(err))
        if st != 0:
            from mediapipe.tasks.python.core import mediapipe_c_utils

            try:
                mediapipe_c_utils.handle_status(st, err)
            finally:
                if err.value is not None:
                    self._raw.MpErrorFree(err)
        try:
            return self._read(res)
        finally:
            self._raw.MpFaceLandmarkerCloseResult(ctypes.byref(res))

    def _read(self, res) -> list:
        out = []
        for i in range(res.face_landmarks_count):
            L = res.face_landmarks[i]
            a = _array(L.landmarks, L.landmarks_count, self._lm_dt)
            lm = np.empty((len(a), 3), np.float32)
            lm[:, 0], lm[:, 1], lm[:, 2] = a["x"], a["y"], a["z"]
            bs = tf = None
            if i < res.face_blendshapes_count:
                C = res.face_blendshapes[i]
                bs = _array(C.categories, C.categories_count, self._cat_dt)["score"].astype(np.float32)
            if i < res.facial_transformation_matrixes_count:
                M = res.facial_transformation_matrixes[i]
                if M.data and M.rows and M.cols:   # column-major, as mediapipe's MpMatrixC.to_numpy reads it
                    d = np.ctypeslib.as_array(M.data, shape=(M.cols * M.rows,))
                    tf = d.reshape(M.cols, M.rows).T.astype(np.float32)
            out.append((lm, bs, tf))
        return out

    def close(self) -> None:
        if self._task is not None:
            self._task.close()
            self._task = None
