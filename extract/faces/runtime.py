"""Running the face models: one LiteRT interpreter per model, and MediaPipe's and LiteRT's C++ log
lines filtered while they load.

LiteRT (`ai-edge-litert`, Google's TensorFlow Lite runtime) runs the detector and the landmarker's
models directly on the calling thread (extract/faces/detect.py, meshnet.py); MediaPipe's graph
around the same models cost as much CPU again as the models themselves (docs/faces.md).
"""
from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager

# MediaPipe's C++ logging is noisy (INFO lines for every graph); keep only errors.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Lines MediaPipe and LiteRT print while loading models that are known to be harmless here.
_HARMLESS = ("Sparsity tensors may not yet be fully supported", "INFO:", "Logging before InitGoogle",
             "inference_feedback_manager", "face_landmarker_graph.cc", "not aligned according to LiteRt",
             "DestroyAccelerator")


@contextmanager
def quiet_stderr():
    """Capture fd 2 (C++ logs bypass sys.stderr) and re-emit only lines that are not known noise."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode("utf-8", "replace").splitlines():
                if line.strip() and not any(h in line for h in _HARMLESS):
                    print(line, file=sys.stderr)


def interpreter(model: bytes):
    """A LiteRT interpreter with its tensors allocated, on one thread (XNNPACK): the stage runs one
    process per core, and a second thread costs more CPU than it saves."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet_stderr():
        it = Interpreter(model_content=model, num_threads=1)
        it.allocate_tensors()
    return it


def one_cv_thread() -> None:
    """OpenCV's worker pool off for this process. The face stage's warps, colour conversions and
    Laplacians are small (256² and less): on 2 cores the second OpenCV thread spent 1.8 ms of CPU per
    frame to take 1.0 ms off the main thread (extract/faces/stage.analyse, 720p, measured with
    /proc/self/task), and the stage scales out by processes anyway (one per core)."""
    import cv2

    cv2.setNumThreads(1)
