"""Render expression sequences to mp4 (ffmpeg, H.264) with the text as a caption, and code curves to PNG.

arkit52 codes go through the dataset's linear rig (`rig.npz`: blendshapes → 478 landmarks) onto the
MediaPipe face-mesh triangles; flame53 codes go through a user-supplied FLAME 2020 model. Meshes are
drawn with a small painter's-algorithm rasteriser (depth-sorted triangles, Lambert shading): no GPU
and no 3-D library needed."""
from __future__ import annotations

import subprocess
import textwrap
import unicodedata
from pathlib import Path

import numpy as np

from pipeline.atomic import atomic_path
from pipeline.codespaces import CODE_SPACES
from pipeline.formats.rig import RIG_FILE, Rig
from pipeline.media import ffmpeg_exe

SKIN = np.array([205, 170, 150], np.float64)  # RGB
BG = (28, 28, 32)
LIGHT = np.array([0.3, 0.4, 1.0]) / np.linalg.norm([0.3, 0.4, 1.0])


def face_mesh_triangles() -> np.ndarray:
    """MediaPipe's face-mesh tessellation as (852, 3) vertex-index triangles.

    `FACE_LANDMARKS_TESSELATION` lists each triangle as three consecutive edges (a,b),(b,c),(c,a)."""
    from mediapipe.tasks.python.vision import FaceLandmarksConnections

    e = np.array([(c.start, c.end) for c in FaceLandmarksConnections.FACE_LANDMARKS_TESSELATION], np.int64)
    if len(e) % 3:
        raise ValueError(f"face-mesh tessellation has {len(e)} edges, not a multiple of 3")
    tri = e.reshape(-1, 3, 2)
    closed = (tri[:, 0, 1] == tri[:, 1, 0]) & (tri[:, 1, 1] == tri[:, 2, 0]) & (tri[:, 2, 1] == tri[:, 0, 0])
    if not closed.all():
        raise ValueError("face-mesh tessellation edges do not form closed triangles in groups of three")
    return tri[:, :, 0].copy()


def ascii_caption(text: str) -> str:
    """OpenCV's Hershey fonts are ASCII only: fold quotes, dashes and accents."""
    text = text.translate({0x2018: "'", 0x2019: "'", 0x201C: '"', 0x201D: '"', 0x2026: "...", 0x2013: "-", 0x2014: "-"})
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


class MeshRenderer:
    """Orthographic view of a mesh sequence; bounds are fixed over all panels so faces share a scale."""

    def __init__(self, tris: np.ndarray, size: int = 384, y_up: bool = True, z_toward_viewer: bool = True):
        self.tris = np.asarray(tris, np.int64)
        self.size = size
        self.y_up = y_up
        self.z_toward = z_toward_viewer
        self.center = None
        self.scale = None

    def fit(self, *seqs: np.ndarray) -> "MeshRenderer":
        pts = np.concatenate([np.asarray(s, np.float64).reshape(-1, 3) for s in seqs])
        lo, hi = pts[:, :2].min(0), pts[:, :2].max(0)
        self.center = (lo + hi) / 2
        self.scale = 0.82 * self.size / max(float((hi - lo).max()), 1e-9)
        return self

    def frame(self, verts: np.ndarray) -> np.ndarray:
        import cv2

        v = np.asarray(verts, np.float64)
        xy = (v[:, :2] - self.center) * self.scale
        if self.y_up:
            xy[:, 1] = -xy[:, 1]
        xy += self.size / 2
        # depth toward the viewer, larger = nearer; painter's algorithm draws the far ones first
        z = v[:, 2] if self.z_toward else -v[:, 2]
        p = v.copy()
        p[:, 2] = z
        if not self.y_up:
            p[:, 1] = -p[:, 1]
        a, b, c = p[self.tris[:, 0]], p[self.tris[:, 1]], p[self.tris[:, 2]]
        n = np.cross(b - a, c - a)
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        shade = 0.3 + 0.7 * np.abs(n @ LIGHT)
        order = np.argsort(z[self.tris].mean(1))
        img = np.empty((self.size, self.size, 3), np.uint8)
        img[:] = BG
        pix = np.round(xy * 16).astype(np.int32)  # 4 fractional bits for sub-pixel edges
        cols = np.clip(shade[:, None] * SKIN, 0, 255).astype(np.uint8)
        for t in order:
            cv2.fillConvexPoly(img, pix[self.tris[t]], cols[t].tolist(), lineType=cv2.LINE_AA, shift=4)
        return img


def caption_strip(text: str, width: int, lines_max: int = 3) -> np.ndarray:
    import cv2

    chars = max(10, width // 11)
    lines = textwrap.wrap(ascii_caption(text), chars)[:lines_max] or [""]
    h = 14 + 24 * len(lines)
    strip = np.zeros((h, width, 3), np.uint8)
    strip[:] = (12, 12, 14)
    for i, line in enumerate(lines):
        cv2.putText(strip, line, (10, 28 + 24 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (240, 240, 240), 1, cv2.LINE_AA)
    return strip


def label(img: np.ndarray, text: str) -> np.ndarray:
    import cv2

    cv2.putText(img, ascii_caption(text), (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (230, 230, 120), 1, cv2.LINE_AA)
    return img


def write_mp4(frames, path: str | Path, fps: float, size: tuple[int, int]) -> Path:
    """Pipe RGB frames (H, W, 3) into ffmpeg's libx264 (yuv420p: plays everywhere), atomically."""
    W, H = size
    path = Path(path)
    with atomic_path(path) as tmp:
        cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}",
               "-r", f"{fps:g}", "-i", "-", "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
               "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(tmp)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            for f in frames:
                if f.shape != (H, W, 3):
                    raise ValueError(f"frame of shape {f.shape}, expected {(H, W, 3)}")
                proc.stdin.write(np.ascontiguousarray(f, np.uint8).tobytes())
            proc.stdin.close()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        err = proc.stderr.read().decode(errors="replace")
        if proc.wait() != 0:
            raise RuntimeError(f"ffmpeg failed writing {path}: {err.strip()[-500:]}")
    return path


def count_frames(path: str | Path) -> int:
    """Decode every frame (tiny grey rescale) and count them: proves the file plays end to end."""
    cmd = [ffmpeg_exe(), "-loglevel", "error", "-i", str(path), "-map", "0:v:0", "-vf", "scale=8:8",
           "-pix_fmt", "gray", "-f", "rawvideo", "-"]
    r = subprocess.run(cmd, capture_output=True, check=True)
    return len(r.stdout) // 64


def render_video(panels: list[tuple[str, np.ndarray]], tris: np.ndarray, out: str | Path, fps: float,
                 caption: str = "", size: int = 384, y_up: bool = True, z_toward_viewer: bool = True) -> Path:
    """Side-by-side panels (label, vertices (T_i, N, 3)) above a caption; the video lasts as long as the
    longest panel. A shorter one holds its last frame, dimmed and marked "ended" (where generation stopped,
    or the real clip ended)."""
    # a panel is mesh vertices (T, N, 3) or ready images (T, size, size, 3) uint8 (the real clip's face)
    is_img = [v.ndim == 4 and v.dtype == np.uint8 for _, v in panels]
    r = MeshRenderer(tris, size, y_up, z_toward_viewer).fit(*[v for (_, v), im in zip(panels, is_img) if not im])
    T = max(len(v) for _, v in panels)
    W = size * len(panels)
    W += W % 2  # yuv420p needs even sizes
    strip = caption_strip(caption, W)
    H = size + strip.shape[0]
    H += H % 2

    def frames():
        for t in range(T):
            img = np.zeros((H, W, 3), np.uint8)
            for i, (name, v) in enumerate(panels):
                ended = t >= len(v)
                tile = v[min(t, len(v) - 1)].copy() if is_img[i] else r.frame(v[min(t, len(v) - 1)])
                if ended:
                    tile = (tile.astype(np.uint16) * 2 // 5).astype(np.uint8)
                img[:size, i * size:(i + 1) * size] = label(tile, f"{name} (ended at {len(v) / fps:.2f} s)"
                                                            if ended else name)
            img[size:size + strip.shape[0]] = strip
            yield img

    return write_mp4(frames(), out, fps, (W, H))


def face_frames(video: str | Path, start: float, end: float, fps: float, track_t: np.ndarray,
                track_box: np.ndarray, size: int, n: int | None = None) -> np.ndarray:
    """(T, size, size, 3) uint8: the real clip's face at the dataset rate, a square of 1.5 × the kept track's
    box (the faces stage's `t` from the segment start, `box` in original pixels) around it, black outside
    the picture. What the real codes were measured from, shown beside the meshes."""
    import cv2

    from pipeline.media import decode

    track_t, track_box = np.asarray(track_t, np.float64), np.asarray(track_box, np.float64)
    out = []
    for b in decode(video, start, end, fps=fps, max_side=1280):
        for frame, t in zip(b.frames, b.t):
            if n is not None and len(out) >= n:
                break
            x0, y0, x1, y1 = track_box[int(np.argmin(np.abs(track_t - (t - start))))] * b.scale
            cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.75 * max(x1 - x0, y1 - y0)
            k = size / max(2 * half, 1.0)        # crop square → panel, as one affine warp (pads with black)
            m = np.array([[k, 0, size / 2 - k * cx], [0, k, size / 2 - k * cy]], np.float64)
            out.append(cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT))
    return np.stack(out) if out else np.zeros((0, size, size, 3), np.uint8)


def real_clip_of(dataset_root: str | Path, sample_id: str) -> tuple[dict, dict] | None:
    """(segment row, track) of a sample when its dataset sits in a workspace (WORKSPACE/datasets/NAME) whose
    state table and faces cache still hold it and its media file still exists; None otherwise."""
    from pipeline.formats import FormatError
    from pipeline.formats.state import read_state
    from pipeline.formats.track import read_track

    root = Path(dataset_root).resolve()
    if root.parent.name != "datasets":
        return None
    got = read_state(root.parent.parent / "state" / root.name, "faces")
    if got is None:
        return None
    rows = got[0][got[0]["segment_id"] == sample_id]
    if rows.empty:
        return None
    row = rows.iloc[0].to_dict()
    if not row.get("faces_dir") or not Path(str(row.get("video_path", ""))).is_file():
        return None
    try:
        return row, read_track(row["faces_dir"], keys=("box", "valid"))
    except FormatError:
        return None


def plot_curves(seqs: dict[str, np.ndarray], dims: list[int], names: list[str], fps: float, out: str | Path,
                title: str = "") -> Path:
    """PNG of chosen code dimensions over time, one subplot per dimension, one line per sequence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(dims), 1, figsize=(8, 1.8 * len(dims) + 0.6), sharex=True, squeeze=False)
    for ax, d in zip(axes[:, 0], dims):
        for lab, s in seqs.items():
            ax.plot(np.arange(len(s)) / fps, s[:, d], label=lab, lw=1.4)
        ax.set_ylabel(names[d] if d < len(names) else f"dim {d}", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="upper right")
    axes[-1, 0].set_xlabel("seconds")
    if title:
        fig.suptitle(ascii_caption(title)[:100], fontsize=10)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return out


# ------------------------------------------------------------------ codes → vertices

def codes_to_mesh(codes_list: list[np.ndarray], code_space: str, dataset_root: str | Path | None = None,
                  flame_model: str | Path | None = None, rig_path: str | Path | None = None):
    """Vertices for each code sequence + triangles + axis conventions (y_up, z_toward_viewer)."""
    if code_space not in CODE_SPACES:
        raise ValueError(f"no renderer for code space {code_space!r} (dataset.json field 'code_space')")
    space = CODE_SPACES[code_space]
    if space.renderer == "flame":
        from model.flame import flame_vertices, load_flame

        if not flame_model:
            raise ValueError("rendering flame53 codes needs --flame PATH to FLAME 2020 generic_model.pkl")
        fm = load_flame(flame_model)
        jaw = list(space.jaw_dims)
        exp = [i for i in range(space.D) if i not in jaw]
        verts = [flame_vertices(fm, c[:, exp], c[:, jaw]) for c in codes_list]
        return verts, fm.faces, True, True
    if space.renderer == "rig":
        rp = Path(rig_path) if rig_path else (Path(dataset_root) / RIG_FILE if dataset_root else None)
        if rp is None or not rp.exists():
            raise FileNotFoundError(f"rendering arkit52 codes needs the dataset's linear rig: {rp} not found")
        rig = Rig.load(rp)
        verts = [np.asarray(rig.apply(np.asarray(c, np.float32)), np.float64) for c in codes_list]
        # the rig's canonical head frame is the image's: x right, y down, z away from the camera
        return verts, face_mesh_triangles(), False, False
    raise ValueError(f"no renderer for code space {code_space!r} (dataset.json field 'code_space')")
