"""Blendshape error against face size on real photographs: the evidence for faces.keep_min_px.

    python benchmarks/face_size.py [--json out.json] [--plot docs/faces_min_size.png]

Each face of the `face_recognition` test photos (Obama x3, Biden; each also mirrored) is rendered into
a 640x360 frame with its landmark box `size` px high, downscaled from the photo through an area
pyramid as a camera would, at 3 sub-pixel offsets, and run through the stage's crop landmarker with
the known box (the detector's own size limit is reported apart: `detected`). The reference is the
same face at 200 px. Figures per size: mean |Δ| over the 51 blendshapes, over the 12 mouth/jaw ones
(what speech moves), and |ΔjawOpen|, mean and worst over faces. A face counts as found where the
landmarker returns landmarks. Stills only: the error is what size alone costs, before compression
and motion blur.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

SIZES = [200, 160, 128, 96, 80, 64, 56, 48, 40, 36, 32, 28, 24, 20]
MOUTH = ["jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthLowerDownLeft", "mouthLowerDownRight",
         "mouthUpperUpLeft", "mouthUpperUpRight", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft",
         "mouthStretchRight"]


def measure(sizes=SIZES, offsets=((0.0, 0.0), (0.33, 0.5), (0.71, 0.2))) -> dict:
    from extract.faces import BLENDSHAPE_INDEX
    from extract.faces.stage import load_models
    from pipeline.config import load_config
    from testdata.realclips import FACE_BOX, Layer, Photo, photos, place, render, face_box

    cfg = load_config().faces
    det, lm = load_models(cfg)
    imgs = {k: Photo(p) for k, p in photos().items() if k in FACE_BOX}
    mouth = [BLENDSHAPE_INDEX[n] for n in MOUTH]
    jaw = BLENDSHAPE_INDEX["jawOpen"]
    rows = []
    for name in sorted(imgs):
        for mirror in (False, True):
            ref = None
            for size in sizes:
                bs, found, detected = [], 0, 0
                for dx, dy in offsets:
                    M = place(name, 320 + dx, 180 + dy, size)
                    if mirror:   # flip about the face centre
                        M = np.array([[-1, 0, 640 + 2 * dx], [0, 1, 0]]) @ np.vstack([M, [0, 0, 1]])
                    frame, _ = render([Layer(name, M)], imgs)
                    box = np.array(face_box(name, M), np.float32)
                    detected += int(any(max(d[2] - d[0], d[3] - d[1]) >= 1 and
                                        d[0] < box[2] and d[2] > box[0] for d in det.detect(frame)))
                    r = lm.run(frame, box)
                    if r is not None and np.isfinite(r.blendshapes).all():
                        found += 1
                        bs.append(r.blendshapes)
                b = np.mean(bs, axis=0) if bs else None
                if size == sizes[0]:
                    ref = b
                row = {"photo": name, "mirror": mirror, "size": size, "found": found / len(offsets),
                       "detected": detected / len(offsets)}
                if b is not None and ref is not None:
                    d = np.abs(b - ref)
                    row.update(err_all=float(d[1:].mean()), err_mouth=float(d[mouth].mean()),
                               err_jaw=float(d[jaw]))
                rows.append(row)
    summary = []
    for size in sizes:
        rs = [r for r in rows if r["size"] == size]
        got = [r for r in rs if "err_all" in r]
        s = {"size": size, "found": round(float(np.mean([r["found"] for r in rs])), 3),
             "detected": round(float(np.mean([r["detected"] for r in rs])), 3)}
        for k in ("err_all", "err_mouth", "err_jaw"):
            v = [r[k] for r in got]
            s[k + "_mean"] = round(float(np.mean(v)), 4) if v else None
            s[k + "_max"] = round(float(np.max(v)), 4) if v else None
        summary.append(s)
    return {"faces": len(imgs) * 2, "rows": rows, "summary": summary}


def plot(res: dict, dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = [x for x in res["summary"] if x["err_all_mean"] is not None]
    sz = [x["size"] for x in s]
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    for k, lab, c in (("err_mouth", "mouth/jaw (12)", "C0"), ("err_jaw", "jawOpen", "C1"), ("err_all", "all 51", "C2")):
        ax.plot(sz, [x[k + "_mean"] for x in s], "o-", color=c, label=f"{lab}, mean")
        ax.plot(sz, [x[k + "_max"] for x in s], "--", color=c, alpha=0.6, label=f"{lab}, worst face")
    ax.axhline(0.05, color="k", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(sz)
    ax.set_xticklabels([str(v) for v in sz], fontsize=7)
    ax.invert_xaxis()
    ax.set_xlabel("face size (landmark box height, px)")
    ax.set_ylabel("|blendshape - 200 px reference|")
    ax.set_title(f"Face Landmarker blendshape error vs face size ({res['faces'] // 2} real photos, "
                 f"each also mirrored)", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(dest)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--from-json", type=Path, help="plot an earlier --json result instead of measuring")
    args = ap.parse_args(argv)
    res = json.loads(args.from_json.read_text()) if args.from_json else measure()
    for s in res["summary"]:
        print(s)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    if args.plot:
        plot(res, args.plot)
    return res


if __name__ == "__main__":
    main()
