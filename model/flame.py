"""Read FLAME 2020 `generic_model.pkl` without chumpy, and pose it with expression + jaw.

The file is a Python 2 pickle whose arrays are partly `chumpy.ch.Ch` objects and whose joint
regressor is a `scipy.sparse.csc_matrix`. `load_flame` unpickles it with an allow-list: chumpy's Ch
becomes a plain-array holder (its state's `x`), numpy arrays and scipy CSC matrices are rebuilt, and
any other class is refused (a pickle can otherwise run arbitrary code)."""
from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.formats.release import restricted_load


class FlameFormatError(ValueError):
    pass


class _Ch:
    """Stand-in for chumpy.ch.Ch: keeps the value array, ignores chumpy's graph bookkeeping."""

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slotstate)
            state = state[0] or state[1]
        x = state.get("x") if isinstance(state, dict) else state
        self.x = None if x is None else np.asarray(x)


class _Csc:
    """Stand-in for scipy.sparse.csc_matrix: rebuilt as a scipy matrix after unpickling."""

    def __setstate__(self, state):
        self.state = state

    def to_dense(self) -> np.ndarray:
        from scipy.sparse import csc_matrix

        s = self.state
        return csc_matrix((s["data"], s["indices"], s["indptr"]), shape=s["_shape"]).toarray()


def _flame_globals():
    """What a FLAME 2020 pickle may name: numpy arrays, and chumpy/scipy classes replaced by our holders."""
    import codecs
    import copyreg

    numpy = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
             ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
             ("numpy._core.multiarray", "scalar")}
    substitute = {("chumpy.ch", "Ch"): _Ch, ("chumpy", "Ch"): _Ch,
                  ("scipy.sparse.csc", "csc_matrix"): _Csc, ("scipy.sparse._csc", "csc_matrix"): _Csc,
                  ("scipy.sparse", "csc_matrix"): _Csc,
                  ("copy_reg", "_reconstructor"): copyreg._reconstructor,
                  ("copyreg", "_reconstructor"): copyreg._reconstructor,
                  ("__builtin__", "object"): object, ("builtins", "object"): object,
                  ("__builtin__", "set"): set, ("builtins", "set"): set,    # chumpy's bookkeeping holds sets
                  ("_codecs", "encode"): codecs.encode}    # protocol-2 bytes from Python 3 writers
    return numpy, substitute


def _arr(v, key: str, path: Path) -> np.ndarray:
    if isinstance(v, _Ch):
        if v.x is None:
            raise FlameFormatError(f"{path}: field {key!r} is a chumpy object without a value array 'x'")
        v = v.x
    elif isinstance(v, _Csc):
        v = v.to_dense()
    if not isinstance(v, np.ndarray):
        raise FlameFormatError(f"{path}: field {key!r} is {type(v).__name__}, expected an array")
    return np.asarray(v)


@dataclass
class FlameModel:
    v_template: np.ndarray   # (V, 3)
    shapedirs: np.ndarray    # (V, 3, n_shape + n_exp)
    posedirs: np.ndarray     # (V*3, 36) as (V, 3, 36)
    J_regressor: np.ndarray  # (5, V)
    weights: np.ndarray      # (V, 5)
    parents: np.ndarray      # (5,) parent joint, -1 for the root
    faces: np.ndarray        # (F, 3)
    n_shape: int = 300

    @property
    def n_exp(self) -> int:
        return self.shapedirs.shape[2] - self.n_shape


def load_flame(path: str | Path, n_shape: int = 300) -> FlameModel:
    """Load FLAME 2020 generic_model.pkl (300 shape + 100 expression components)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"FLAME model {path} not found (download generic_model.pkl of FLAME 2020 from "
                                f"flame.is.tue.mpg.de after registering)")
    try:
        allow, substitute = _flame_globals()
        d = restricted_load(io.BytesIO(path.read_bytes()), allow, f"FLAME file {path}", substitute, "latin1")
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError) as e:
        raise FlameFormatError(f"{path}: not a readable FLAME pickle: {e}") from None
    if not isinstance(d, dict):
        raise FlameFormatError(f"{path}: top level is {type(d).__name__}, expected a dict")
    need = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
    for k in need:
        if k not in d:
            raise FlameFormatError(f"{path}: field {k!r} is missing")
    a = {k: _arr(d[k], k, path) for k in need}
    V = a["v_template"].shape[0]
    sd = a["shapedirs"].astype(np.float64)
    if sd.ndim != 3 or sd.shape[:2] != (V, 3) or sd.shape[2] <= n_shape:
        raise FlameFormatError(f"{path}: field 'shapedirs' has shape {sd.shape}, expected ({V}, 3, >{n_shape})")
    pd_ = a["posedirs"].astype(np.float64).reshape(V, 3, -1)
    if pd_.shape[2] != 36:
        raise FlameFormatError(f"{path}: field 'posedirs' has {pd_.shape[2]} pose features, expected 36 (4 joints × 9)")
    kin = a["kintree_table"].astype(np.int64)
    parents = kin[0].copy()
    parents[0] = -1
    return FlameModel(a["v_template"].astype(np.float64), sd, pd_, a["J_regressor"].astype(np.float64),
                      a["weights"].astype(np.float64), parents, a["f"].astype(np.int64), n_shape)


def rodrigues(r: np.ndarray) -> np.ndarray:
    """Axis-angle (..., 3) -> rotation matrices (..., 3, 3)."""
    theta = np.linalg.norm(r, axis=-1, keepdims=True)
    k = r / np.maximum(theta, 1e-12)
    K = np.zeros(r.shape[:-1] + (3, 3))
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -k[..., 2], k[..., 1], -k[..., 0]
    K[..., 1, 0], K[..., 2, 0], K[..., 2, 1] = k[..., 2], -k[..., 1], k[..., 0]
    s, c = np.sin(theta)[..., None], np.cos(theta)[..., None]
    return np.eye(3) + s * K + (1 - c) * K @ K


def flame_vertices(model: FlameModel, exp: np.ndarray, jaw: np.ndarray, shape: np.ndarray | None = None) -> np.ndarray:
    """Vertices (T, V, 3) for expression coefficients (T, E ≤ n_exp) and jaw axis-angle (T, 3);
    global, neck and eye poses are zero (EmoAva keeps none of them)."""
    exp = np.atleast_2d(np.asarray(exp, np.float64))
    jaw = np.atleast_2d(np.asarray(jaw, np.float64))
    T, E = exp.shape
    if E > model.n_exp:
        raise ValueError(f"{E} expression coefficients, the FLAME model has {model.n_exp}")
    v = model.v_template[None] + np.einsum("vck,tk->tvc", model.shapedirs[:, :, model.n_shape:model.n_shape + E], exp)
    if shape is not None:
        shape = np.asarray(shape, np.float64)
        v = v + np.einsum("vck,k->vc", model.shapedirs[:, :, :len(shape)], shape)[None]
    J = np.einsum("jv,tvc->tjc", model.J_regressor, v)          # (T, 5, 3): root, neck, jaw, eyes
    nj = J.shape[1]
    pose = np.zeros((T, nj, 3))
    pose[:, 2] = jaw
    R = rodrigues(pose)                                          # (T, 5, 3, 3)
    feat = (R[:, 1:] - np.eye(3)).reshape(T, -1)                 # (T, 36) pose-corrective features
    v = v + np.einsum("vck,tk->tvc", model.posedirs, feat)
    # forward kinematics: world transform of each joint
    G = np.zeros((T, nj, 4, 4))
    for j in range(nj):
        local = np.zeros((T, 4, 4))
        local[:, :3, :3] = R[:, j]
        p = model.parents[j]
        local[:, :3, 3] = J[:, j] - (J[:, p] if p >= 0 else 0)
        local[:, 3, 3] = 1
        G[:, j] = local if p < 0 else G[:, p] @ local
    # remove the rest-pose joint positions so G maps rest-pose points
    Gr = G.copy()
    Gr[:, :, :3, 3] -= np.einsum("tjab,tjb->tja", G[:, :, :3, :3], J)
    Tv = np.einsum("vj,tjab->tvab", model.weights, Gr)          # (T, V, 4, 4)
    return np.einsum("tvab,tvb->tva", Tv[:, :, :3, :3], v) + Tv[:, :, :3, 3]
