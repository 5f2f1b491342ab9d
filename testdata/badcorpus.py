"""A deterministic corpus of bad (and a few good) inputs for the hardening tests: one build runs over
all of it and every item must end with the specific reason listed in `corpus.json`.

    python -m testdata.badcorpus DEST        # ~10 s, ~1 MB, no network

Layout under DEST:
  good/        clips with sidecar captions that must build (plain, VFR, rotated, no audio,
               cp1252 captions, overlapping + reversed cues, audio starting late, a silent
               default audio track before the speech track)
  bad/         broken media and captions (truncated, corrupt, zero bytes, not media, audio only,
               1x1, 8K, 0.1 s, 30 min, only reversed cues, empty caption file, no captions)
  table/rows.csv       rows with missing fields, bad times, non-UTF-8 bytes, emoji, RTL text,
                       duplicates, refused URL schemes and private addresses
  table/good.csv       the good rows of rows.csv only (same spans: same segment ids)
  manifest.yaml        every source above (+ a youtube entry of refused URLs, + a duplicated source)
  manifest-good.yaml   only the good items (a clean reference build)
  manifest-traversal.yaml   a source id trying `../`: refused when the manifest loads
  manifest-aliasbomb.yaml, config-aliasbomb.yaml   YAML alias bombs: refused at once
  manifest-cp1252.yaml      a manifest saved as cp1252: refused with a line and byte, no traceback
  table/huge.parquet        2 M dictionary-encoded rows in a tiny file: refused from its footer
  corpus.json          every item: kind, source, what it is, and its expected outcome

An item's expected outcome is the first stage record that is not ok (`stage`, `status`, `reason`),
or `ok` when it reaches the dataset. Items: folder clips are `SOURCE/STEM`, table rows
`table/rowN`, youtube URLs `web/URL`.
"""
from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from pipeline.atomic import atomic_dir, atomic_path, write_bytes, write_json, write_text

CORPUS_VERSION = "5"   # 5: a clip without captions goes to the speech stage (its generated voice: no speech)

_X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-threads", "1", "-flags:v", "+bitexact"]
_MUX = ["-map_metadata", "-1", "-fflags", "+bitexact", "-movflags", "+faststart"]

# the good clip's two sentences (start, end, text); the table rows reuse these spans
GOOD_CUES = [(0.20, 1.10, "Hello, this clip is fine."), (1.30, 2.30, "And it keeps going well!")]


def _ff(*args: str) -> None:
    from pipeline.media import ffmpeg_exe

    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
                          stdin=subprocess.DEVNULL, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed: {proc.stderr.decode(errors='replace')[-600:]}")


def _vtt(cues) -> str:
    def ts(s: float) -> str:
        h, r = divmod(s, 3600)
        m, sec = divmod(r, 60)
        return f"{int(h):02d}:{int(m):02d}:{sec:06.3f}"

    return "WEBVTT\n\n" + "".join(f"{ts(a)} --> {ts(b)}\n{t}\n\n" for a, b, t in cues)


def _talking(dest: Path, duration: float, seed: int, times=None) -> None:
    from testdata.samplegen import ClipSpec, _closeup, make_clip

    make_clip(ClipSpec(dest.stem, duration, [t for _, _, t in GOOD_CUES][: 1 if duration < 1 else 2], seed,
                       _closeup, windows=[(0.0, duration)] if duration < 1 else [(a, b) for a, b, _ in GOOD_CUES],
                       times=times), dest, captions=False)
    dest.with_suffix(".signals.json").unlink(missing_ok=True)


def _flat(dest: Path, size: str, rate: float, seconds: float, color: str = "0x406080") -> None:
    _ff("-f", "lavfi", "-i", f"color=c={color}:s={size}:r={rate}:d={seconds}", *_X264, "-pix_fmt", "yuv444p",
        *_MUX, str(dest))


def _good(root: Path, items: list) -> None:
    root.mkdir(parents=True)
    good = root / "good.mp4"
    _talking(good, 2.5, 71)
    write_text(root / "good.vtt", _vtt(GOOD_CUES))
    items.append(("good/good", "plain talking clip, 2 cues", "ok", "good"))

    vfr_t = np.concatenate([np.arange(30) / 25, 1.2 + np.arange(8) / 10, 2.0 + np.arange(15) / 30])
    _talking(root / "vfr.mp4", 2.5, 72, times=vfr_t)
    write_text(root / "vfr.vtt", _vtt(GOOD_CUES))
    items.append(("good/vfr", "variable frame rate (25/10/30 fps pieces)", "ok", "good"))

    # pixels stored turned 90° clockwise, display matrix turns them back: upright on screen
    tmp = root / "_turned.mp4"
    _ff("-i", str(good), "-vf", "transpose=1", "-an", *_X264, "-pix_fmt", "yuv420p", *_MUX, str(tmp))
    _ff("-display_rotation", "90", "-i", str(tmp), "-i", str(good), "-map", "0:v", "-map", "1:a", "-c", "copy",
        *_MUX, str(root / "rotated.mp4"))
    tmp.unlink()
    write_text(root / "rotated.vtt", _vtt(GOOD_CUES))
    items.append(("good/rotated", "rotation metadata (90°) on sideways-stored pixels", "ok", "good"))

    _ff("-i", str(good), "-map", "0:v", "-c", "copy", *_MUX, str(root / "no_audio.mp4"))
    write_text(root / "no_audio.vtt", _vtt(GOOD_CUES))
    items.append(("good/no_audio", "no audio track", "ok", "good"))

    shutil.copyfile(good, root / "latin1.mp4")
    write_bytes(root / "latin1.vtt", _vtt([(a, b, t) for (a, b, _), t in
                                           zip(GOOD_CUES, ["Café déjà vu, señor.", "Voilà “naïve” Zoë!"])])
                .encode("cp1252"))
    items.append(("good/latin1", "captions in cp1252, not UTF-8", "ok", "good"))

    shutil.copyfile(good, root / "overlap.mp4")
    write_text(root / "overlap.vtt", _vtt([(0.20, 1.10, "First we overlap."), (0.90, 1.60, "Second one overlaps."),
                                           (2.20, 1.40, "This cue runs backwards."), (1.70, 2.30, "Then it ends.")]))
    items.append(("good/overlap", "overlapping cues and one reversed cue (dropped)", "ok", "good"))

    # the audio's first 1.2 s missing: the rest starts at 1.2 s, in sync (read_audio pads the gap). Via a
    # WAV: `-ss 1.2 -itsoffset 1.2` on the same input while re-encoding starts the audio at 0 again
    tail = root / "_tail.wav"
    _ff("-ss", "1.2", "-i", str(good), "-map", "0:a", "-c:a", "pcm_s16le", "-fflags", "+bitexact", str(tail))
    _ff("-i", str(good), "-itsoffset", "1.2", "-i", str(tail), "-map", "0:v", "-map", "1:a", "-c:v", "copy",
        "-c:a", "aac", "-b:a", "32k", "-flags:a", "+bitexact", *_MUX, str(root / "late_audio.mp4"))
    tail.unlink()
    write_text(root / "late_audio.vtt", _vtt(GOOD_CUES))
    items.append(("good/late_audio", "audio starts 1.2 s after the video", "ok", "good"))

    # a silent commentary track marked default before the speech track (read_audio moves to the speech)
    _ff("-i", str(good), "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono:d=2.5", "-map", "0:v", "-map", "1:a",
        "-map", "0:a", "-c:v", "copy", "-c:a", "aac", "-b:a", "32k", "-flags:a", "+bitexact",
        "-disposition:a:0", "default", "-disposition:a:1", "0", "-metadata:s:a:0", "language=deu",
        "-metadata:s:a:1", "language=eng", *_MUX, str(root / "two_audio.mp4"))
    write_text(root / "two_audio.vtt", _vtt(GOOD_CUES))
    items.append(("good/two_audio", "two audio streams: a silent default one, then the speech", "ok", "good"))


def _bad(root: Path, good: Path, items: list) -> None:
    root.mkdir(parents=True)
    data = good.read_bytes()
    rng = random.Random(9)
    one = _vtt([GOOD_CUES[0]])

    def item(stem: str, what: str, expect: tuple, captions: str | bytes | None = one):
        if isinstance(captions, str):
            write_text(root / f"{stem}.vtt", captions)
        elif isinstance(captions, bytes):
            write_bytes(root / f"{stem}.vtt", captions)
        items.append((f"bad/{stem}", what, expect, "bad"))

    write_bytes(root / "truncated.mp4", data[: len(data) // 2])
    item("truncated", "truncated mp4 (cut at half its size)", ("ingest", "failed", "media.unreadable"))
    corrupt = bytearray(data)
    corrupt[24:2048] = bytes(rng.randrange(256) for _ in range(2048 - 24))
    write_bytes(root / "corrupt.mp4", bytes(corrupt))
    item("corrupt", "corrupt mp4: header (moov) overwritten with random bytes",
         ("ingest", "failed", "media.unreadable"))
    write_bytes(root / "zero.mp4", b"")
    item("zero", "zero-byte file", ("ingest", "failed", "media.unreadable"))
    write_text(root / "not_media.mp4", "this is a text file with an .mp4 name\n")
    item("not_media", "text file named .mp4", ("ingest", "failed", "media.unreadable"))
    _ff("-i", str(good), "-map", "0:a", "-c", "copy", *_MUX, str(root / "audio_only.mp4"))
    item("audio_only", "audio-only mp4", ("ingest", "failed", "media.no_video"))
    _flat(root / "tiny_1x1.mp4", "1x1", 25, 2.5)
    item("tiny_1x1", "1x1-pixel frames", ("faces", "skipped", "faces.no_face"))
    _flat(root / "huge_8k.mp4", "7680x4320", 5, 1.2)
    item("huge_8k", "7680x4320 frames (6 frames at 5 fps)", ("faces", "skipped", "faces.no_face"))
    _talking(root / "short.mp4", 0.1, 73)
    item("short", "0.1 s clip; its cue (0.0-0.5 s) is clipped to the media", ("faces", "skipped",
                                                                             "faces.track_too_short"),
         _vtt([(0.0, 0.5, "Too short to see.")]))
    _flat(root / "long_30min.mp4", "32x18", 1, 1800)
    item("long_30min", "30-minute clip (32x18, 1 fps), one cue at 15:00", ("faces", "skipped", "faces.no_face"),
         _vtt([(900.0, 902.0, "Half an hour in.")]))
    shutil.copyfile(good, root / "reversed.mp4")
    item("reversed", "every cue ends before it starts", ("ingest", "failed", "input.bad_captions"),
         _vtt([(1.10, 0.20, "Backwards."), (2.30, 1.30, "Also backwards.")]))
    shutil.copyfile(good, root / "empty_captions.mp4")
    item("empty_captions", "empty (0-byte) caption file", ("ingest", "skipped", "input.empty_text"), b"")
    shutil.copyfile(good, root / "garbled_captions.mp4")
    item("garbled_captions", "caption file of random bytes", ("ingest", "failed", "input.bad_captions"),
         bytes(rng.randrange(256) for _ in range(600)))
    shutil.copyfile(good, root / "no_captions.mp4")
    item("no_captions", "clip without a sidecar caption file (transcribed: its generated voice is no speech)",
         ("speech", "skipped", "speech.no_speech"), None)
    # one 300 KB cue built to make backtracking regexes quadratic: skipped over sources.captions.max_cue_chars
    # (and parsed in linear time when the cap is raised: tests/test_hardening.py -k caption_bombs)
    for stem, unit, what in (("voice_bomb", "<v ", "`<v `"), ("bracket_bomb", "[", "`[`")):
        shutil.copyfile(good, root / f"{stem}.mp4")
        item(stem, f"one 300 KB cue made of {what} (quadratic for a backtracking regex)",
             ("ingest", "failed", "input.bad_captions"),
             "WEBVTT\n\n00:00:00.200 --> 00:00:01.100\n" + unit * (300_000 // len(unit)) + "\n")


# table rows: (cells, expected outcome or "ok", what, good?)  — times are the good clip's cue spans
_ROWS = [
    (b"../good/good.mp4,0.20,1.10,I love this \xf0\x9f\x98\x80\xf0\x9f\x8e\x89 so much!", "ok", "emoji", True),
    ('../good/good.mp4,1.30,2.30,"שלום, מה שלומך היום?"'.encode(), "ok", "right-to-left (Hebrew) text",
     True),
    (b"../good/good.mp4,0.25,1.05,Caf\xe9 \x93quoted\x94 na\xefve", "ok", "non-UTF-8 (cp1252) bytes in the text", True),
    (b"../good/good.mp4,0.20,1.10,A duplicate of row 1.", ("ingest", "skipped", "input.duplicate"),
     "duplicate row: same video and span as row 1", False),
    (b"../good/good.mp4,,1.0,No start time.", ("ingest", "failed", "input.bad_time"), "missing start", False),
    (b",0.5,1.0,No video.", ("ingest", "failed", "input.bad_row"), "missing video", False),
    (b"../good/good.mp4,0.5,1.0,", ("ingest", "skipped", "input.empty_text"), "missing text", False),
    (b"../good/good.mp4,0.5", ("ingest", "failed", "input.bad_time"), "row with only two fields", False),
    (b"../good/good.mp4,0.5,1.0,Hello, world, unquoted, commas", ("ingest", "failed", "input.bad_row"),
     "row with extra fields (unquoted commas)", False),
    (b"../good/good.mp4,abc,1.0,Bad start.", ("ingest", "failed", "input.bad_time"), "start is not a time", False),
    (b"../good/good.mp4,1.5,0.5,Reversed.", ("ingest", "skipped", "input.bad_time"), "end before start", False),
    (b"../good/good.mp4,-1,0.5,Negative.", ("ingest", "skipped", "input.bad_time"), "negative start", False),
    (b"../good/good.mp4,0:99:00,0:99:05,Bad clock.", ("ingest", "failed", "input.bad_time"), "minutes >= 60", False),
    (b"../good/good.mp4,nan,1.0,Not a number.", ("ingest", "failed", "input.bad_time"), "NaN start", False),
    (b"../good/good.mp4,0,500,Too long.", ("ingest", "skipped", "input.bad_time"), "500 s span", False),
    (b"../good/good.mp4,50,52,After the end.", ("ingest", "skipped", "media.span_outside"),
     "span after the media ends", False),
    (b"../good/missing.mp4,0,1,Gone.", ("ingest", "failed", "input.missing_file"), "video file missing", False),
    (b"ftp://example.com/v.mp4,0,1,FTP.", ("ingest", "failed", "download.url_refused"), "ftp:// URL", False),
    (b"file:///etc/hosts,0,1,Local file.", ("ingest", "failed", "download.url_refused"), "file:// URL", False),
    (b"http://127.0.0.1:9/v.mp4,0,1,Loopback.", ("ingest", "failed", "download.url_refused"),
     "loopback address", False),
    (b"http://169.254.169.254/latest/meta-data,0,1,Metadata service.", ("ingest", "failed", "download.url_refused"),
     "link-local cloud metadata address", False),
]

_WEB_URLS = [("ftp://example.com/video", "ftp:// scheme"), ("file:///etc/passwd", "file:// URL"),
             ("gopher://example.com/1", "gopher:// scheme"), ("http://10.1.2.3/watch?v=x", "private address"),
             ("http://localhost:8080/v", "localhost")]


def _table(root: Path, items: list) -> None:
    root.mkdir(parents=True)
    head = b"video,start,end,text\n"
    write_bytes(root / "rows.csv", head + b"\n".join(r[0] for r in _ROWS) + b"\n")
    write_bytes(root / "good.csv", head + b"\n".join(r[0] for r in _ROWS if r[3]) + b"\n")
    for n, (cells, expect, what, good) in enumerate(_ROWS, 1):
        seg = None
        if good:
            start, end = cells.split(b",")[1:3]
            seg = {"video_id": "good", "start": float(start), "end": float(end)}
        items.append((f"table/row{n}", what, expect, "table", seg))


HUGE_TABLE_ROWS = 2_000_000   # over sources.table.max_rows (1 M) in a ~40 KB file


def _huge_table(root: Path, items: list) -> None:
    """A small Parquet file of many dictionary-encoded rows: refused from its footer, never read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    idx = pa.array(np.zeros(HUGE_TABLE_ROWS, np.int8))
    cols = {c: pa.DictionaryArray.from_arrays(idx, pa.array([v])) for c, v in
            (("video", "../good/good.mp4"), ("start", "0.2"), ("end", "1.1"), ("text", "Again and again."))}
    with atomic_path(root / "huge.parquet") as tmp:
        pq.write_table(pa.table(cols), tmp, compression="zstd")
    items.append(("huge_table", f"Parquet table of {HUGE_TABLE_ROWS} dictionary-encoded rows in "
                                f"{(root / 'huge.parquet').stat().st_size // 1024} KiB (over sources.table.max_rows)",
                  ("ingest", "failed", "input.bad_row"), "table"))


# a "billion laughs" YAML: 9 levels of 9 aliases each, ~560 bytes that expand to 9^9 strings
ALIAS_BOMB = "".join([
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n',
    *[f"{x}: &{x} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n" for p, x in zip("abcdefgh", "bcdefghi")],
    "name: *i\nsources: *i\n"])


def _manifests(dest: Path) -> None:
    # the corpus' voices are generated, not speech: spans are not aligned against them (align off);
    # clips without any text are still transcribed (and found to hold no speech)
    srcs = [{"id": "good", "kind": "folder", "path": "good", "align": "off"},
            {"id": "table", "kind": "table", "path": "table/good.csv", "align": "off"}]
    base = {"name": "badcorpus", "license": "CC0-1.0"}
    write_text(dest / "manifest-good.yaml", json.dumps(dict(base, sources=srcs), indent=1) + "\n")
    full = [srcs[0], {"id": "table", "kind": "table", "path": "table/rows.csv", "align": "off"},
            {"id": "bad", "kind": "folder", "path": "bad", "align": "off"},
            {"id": "good_again", "kind": "folder", "path": "good", "pattern": "good.mp4", "align": "off"},
            {"id": "web", "kind": "youtube", "urls": [u for u, _ in _WEB_URLS], "align": "off"},
            {"id": "huge_table", "kind": "table", "path": "table/huge.parquet", "align": "off"}]
    write_text(dest / "manifest.yaml", json.dumps(dict(base, sources=full), indent=1) + "\n")
    trav = [{"id": "../escape", "kind": "folder", "path": "good"}]
    write_text(dest / "manifest-traversal.yaml", json.dumps(dict(base, sources=trav), indent=1) + "\n")
    write_text(dest / "manifest-aliasbomb.yaml", ALIAS_BOMB)
    write_text(dest / "config-aliasbomb.yaml", ALIAS_BOMB.replace("name: *i\nsources: *i\n", "faces: *i\n"))
    write_bytes(dest / "manifest-cp1252.yaml",
                json.dumps(dict(base, description="Café “quoted”", sources=srcs), ensure_ascii=False,
                           indent=1).encode("cp1252") + b"\n")


def make_bad_corpus(dest: str | Path, force: bool = False) -> dict:
    """Generate the corpus under `dest` (deterministic) and return its index (also `corpus.json`).
    An existing corpus of this version is reused unless `force`."""
    dest = Path(dest)
    index = dest / "corpus.json"
    if index.exists() and not force:
        idx = json.loads(index.read_text())
        if idx.get("version") == CORPUS_VERSION:
            return idx
    if dest.exists() and any(dest.iterdir()) and not index.exists():
        raise FileExistsError(f"{dest} is not empty and holds no corpus.json: refusing to overwrite it")
    with atomic_dir(dest, replace=True) as tmp:
        raw: list = []
        _good(tmp / "good", raw)
        _bad(tmp / "bad", tmp / "good" / "good.mp4", raw)
        _table(tmp / "table", raw)
        _huge_table(tmp / "table", raw)
        raw.append(("good_again/good", "the `good` folder listed again under another source id",
                    ("assemble", "skipped", "filter.duplicate"), "duplicate"))
        for url, what in _WEB_URLS:
            raw.append((f"web/{url}", f"youtube kind: {what}", ("ingest", "failed", "download.url_refused"), "web"))
        _manifests(tmp)
        items = []
        for it in raw:
            iid, what, expect, group = it[:4]
            exp = {"stage": "assemble", "status": "ok", "reason": "ok"} if expect == "ok" else \
                dict(zip(("stage", "status", "reason"), expect))
            src, _, name = iid.partition("/")
            d = {"id": iid, "source": src, "name": name, "what": what, "expected": exp,
                 "good": expect == "ok"}
            if len(it) > 4 and it[4]:
                d["segment"] = it[4]
            items.append(d)
        idx = {"version": CORPUS_VERSION, "items": items,
               "traversal": {"manifest": "manifest-traversal.yaml", "expected": "ManifestError naming '../escape'"},
               "refused_inputs": {
                   "manifest-aliasbomb.yaml": "ManifestError: alias not allowed, in well under a second",
                   "config-aliasbomb.yaml": "ConfigError: alias not allowed, in well under a second",
                   "manifest-cp1252.yaml": "ManifestError: not UTF-8 text, naming the line and byte"},
               "files": sorted(str(f.relative_to(tmp)) for f in tmp.rglob("*") if f.is_file())}
        write_json(tmp / "corpus.json", idx)
    return idx


def main(argv: list[str] | None = None) -> int:
    import time

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (1, 2) or argv[0].startswith("-") and argv[0] != "--force":
        print("usage: python -m testdata.badcorpus [--force] DEST", file=sys.stderr)
        return 2
    force = "--force" in argv
    dest = [a for a in argv if a != "--force"][0]
    t0 = time.monotonic()
    idx = make_bad_corpus(dest, force=force)
    print(f"bad corpus: {len(idx['items'])} items, {len(idx['files'])} files in {dest} "
          f"({time.monotonic() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
