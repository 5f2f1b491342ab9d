"""Releases: immutability, checksums, tamper detection, restricted unpickling, publish, --exclude, CLI."""
from __future__ import annotations

import json
import os
import pickle
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.formats.dataset import read_table

from dataset.release import ReleaseError, publish, read_stage1, release, safe_load_pickle, verify, write_sums
from pipeline.workspace import Workspace
from test_assemble import build


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out, _, _ = build(tmp_path_factory.mktemp("rel") / "ws")
    return out


@pytest.fixture(scope="module")
def rel(dataset):
    ws = Workspace(dataset.parent.parent)
    return release(dataset, ws, "0.1.0", tar=True)


def _writable(p: Path) -> None:
    os.chmod(p, stat.S_IRUSR | stat.S_IWUSR)


def test_release_is_complete_verified_and_immutable(dataset, rel, tmp_path):
    assert rel.name == "demo-0.1.0" and verify(rel) == []
    names = {p.relative_to(rel).as_posix() for p in rel.rglob("*") if p.is_file()}
    for f in ("SHA256SUMS", "dataset.json", "data/train.parquet", "data/validation.parquet", "data/test.parquet",
              "README.md", "report.html", "stage1_mean.npy",
              "train_stage1_exps.pkl", "provenance/config.yaml", "provenance/release.json",
              "provenance/run_summary.txt", "licenses/talk.txt", "licenses/meld.txt"):
        assert f in names, f
    # the release holds the dataset's files unchanged
    for f in ("train_stage1_exps.pkl", "data/train.parquet", "stage1_std.npy"):
        assert (rel / f).read_bytes() == (dataset / f).read_bytes()
    # what a Hugging Face user gets from the release folder: three splits, the test set only in `test`
    import datasets

    dd = datasets.load_dataset(str(rel), cache_dir=str(tmp_path / "hf"))
    assert {k: v.num_rows for k, v in dd.items()} == {
        hf: json.loads((rel / "dataset.json").read_text())["counts"][s]["samples"]
        for hf, s in (("train", "train"), ("validation", "dev"), ("test", "test"))}
    assert set(dd["test"]["split"]) == {"test"} and "test" not in set(dd["train"]["split"])
    sums = (rel / "SHA256SUMS").read_text().splitlines()
    assert len(sums) == len(names) - 1 and all(len(line.split("  ")[0]) == 64 for line in sums)
    assert not os.access(rel / "dataset.json", os.W_OK) or os.geteuid() == 0
    assert stat.S_IMODE((rel / "dataset.json").stat().st_mode) == 0o444
    with pytest.raises(FileExistsError, match="immutable"):
        release(dataset, Workspace(dataset.parent.parent), "0.1.0")
    # the deterministic archive verifies too
    tgz = rel.parent / "demo-0.1.0.tar.gz"
    assert tgz.is_file() and verify(tgz) == []
    texts, exps = read_stage1(rel, "dev")
    assert len(texts) == len(exps) and exps[0].dtype == np.float32


def test_tampered_release_fails_and_names_the_file(dataset, tmp_path):
    ws = Workspace(tmp_path / "ws")
    r = release(dataset, ws, "1.0")
    target = r / "train_stage1_exps.pkl"
    _writable(target)
    data = bytearray(target.read_bytes())
    data[-20] ^= 0xFF
    target.write_bytes(bytes(data))
    (r / "extra.txt").write_text("sneaked in")
    problems = verify(r)
    assert any(p.startswith("train_stage1_exps.pkl: hash mismatch") for p in problems), problems
    assert any(p.startswith("extra.txt: not listed") for p in problems)
    with pytest.raises(ReleaseError, match="train_stage1_exps.pkl"):
        read_stage1(r, "train")
    (r / "extra.txt").unlink()
    _writable(r / "dataset.json")
    (r / "dataset.json").unlink()
    assert any(p.startswith("dataset.json: missing") for p in verify(r))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_malicious_pickle_with_matching_hash_is_refused(dataset, tmp_path):
    # someone rebuilds SHA256SUMS after planting a code-executing pickle: the restricted unpickler refuses it
    ws = Workspace(tmp_path / "ws")
    r = release(dataset, ws, "2.0")
    bad = r / "test_stage1_text.pkl"
    _writable(bad)
    bad.write_bytes(pickle.dumps([_Evil()]))
    _writable(r / "SHA256SUMS")
    write_sums(r)
    problems = verify(r)
    assert any("test_stage1_text.pkl" in p and "not allowed" in p for p in problems), problems
    with pytest.raises(ReleaseError, match="posix.system|os.system|not allowed"):
        safe_load_pickle(bad)
    obj = tmp_path / "obj.pkl"
    obj.write_bytes(pickle.dumps([np.array([{"a": 1}], dtype=object)]))
    with pytest.raises(ReleaseError):
        safe_load_pickle(obj)


def test_publish_to_local_folder_and_file_url(rel, tmp_path):
    dest = publish(rel, str(tmp_path / "mirror"))
    assert Path(dest) == tmp_path / "mirror" / rel.name and verify(dest) == []
    url = publish(rel, f"file://{tmp_path / 'bucket'}")
    assert url == f"file://{tmp_path / 'bucket'}/{rel.name}" and verify(tmp_path / "bucket" / rel.name) == []
    with pytest.raises(FileExistsError):
        publish(rel, str(tmp_path / "mirror"))
    # an unverified folder is never published
    broken = tmp_path / "mirror" / rel.name
    (broken / "stray.bin").write_bytes(b"x")
    with pytest.raises(ReleaseError, match="stray.bin"):
        publish(broken, str(tmp_path / "elsewhere"))
    assert not (tmp_path / "elsewhere" / rel.name).exists()


def test_exclude_removes_exactly_the_listed_ids(dataset, tmp_path):
    ws = Workspace(tmp_path / "ws")
    before = read_table(dataset)
    drop = ["v01s1", "meld2", "meld0"]
    ids = tmp_path / "optout.txt"
    ids.write_text("# takedown requests\nv01s1\nmeld2  # dev sample\n\nmeld0\nnot-a-sample\n")
    r = release(dataset, ws, "1.1", exclude=ids)
    assert verify(r) == []
    after = read_table(r)
    assert set(before["sample_id"]) - set(after["sample_id"]) == set(drop)
    assert len(after) == len(before) - 3
    # the remaining rows are unchanged, in the same relative order
    kept = before[~before.sample_id.isin(drop)].reset_index(drop=True)
    pd.testing.assert_series_equal(kept["text"], after["text"])
    texts = sum((safe_load_pickle(r / f"{s}_stage1_text.pkl") for s in ("train", "dev", "test")), [])
    assert texts == list(after["text"])
    info = json.loads((r / "dataset.json").read_text())
    assert info["excluded"] == {"listed": 4, "removed": 3}
    assert sum(c["samples"] for c in info["counts"].values()) == len(after)
    exc = json.loads((r / "provenance" / "excluded.json").read_text())
    assert exc["not_found"] == ["not-a-sample"] and sorted(exc["removed"]) == sorted(drop)
    # statistics recomputed over the remaining train frames
    tr = np.concatenate([np.stack(c) for c in after[after.split == "train"]["codes"]]).astype(np.float64)
    np.testing.assert_allclose(np.load(r / "stage1_mean.npy"), tr.mean(0), rtol=1e-6, atol=1e-7)
    assert str(len(after)) in (r / "README.md").read_text()


def test_cli_release_verify_publish(dataset, tmp_path):
    import typer
    from typer.testing import CliRunner

    from dataset import cli as rel_mod

    app = typer.Typer()
    rel_mod.register(app)
    runner = CliRunner()
    for cmd in ("release", "verify", "publish"):
        res = runner.invoke(app, [cmd, "--help"])
        assert res.exit_code == 0 and "Usage" in res.output
    ws = tmp_path / "ws"
    res = runner.invoke(app, ["release", str(dataset), "--version", "3.0", "-w", str(ws)])
    assert res.exit_code == 0, res.output
    out = ws / "releases" / "demo-3.0"
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 0
    res = runner.invoke(app, ["release", str(dataset), "--version", "3.0", "-w", str(ws)])
    assert res.exit_code == 2 and "immutable" in res.output
    res = runner.invoke(app, ["publish", str(out), str(tmp_path / "pub")])
    assert res.exit_code == 0, res.output
    f = tmp_path / "pub" / "demo-3.0" / "stage1_mean.npy"
    f.write_bytes(f.read_bytes()[:-4] + b"\0\0\0\0")
    res = runner.invoke(app, ["verify", str(f.parent)])
    assert res.exit_code == 1 and "stage1_mean.npy" in res.output


def test_extra_files_and_empty_dataset_release(tmp_path):
    # the runner's arkit52 rig travels with the dataset and survives an --exclude rewrite
    rig = tmp_path / "rig.npz"
    np.savez(rig, basis=np.ones((52, 3), np.float32))
    out, _, _ = build(tmp_path / "ws", extra_files={"rig.npz": rig}, n_videos=2)
    assert (out / "rig.npz").read_bytes() == rig.read_bytes()
    assert json.loads((out / "dataset.json").read_text())["extra_files"] == ["rig.npz"]
    ids = tmp_path / "ids.txt"
    ids.write_text("v00s0\n")
    r = release(out, Workspace(tmp_path / "ws"), "1.0", exclude=ids)
    assert verify(r) == [] and (r / "rig.npz").read_bytes() == rig.read_bytes()
    # a dataset where nothing passed is refused (its card and report say why), and so is excluding everything
    empty, _, _ = build(tmp_path / "ws-empty", overrides=["assemble.min_frames=100000"], n_videos=1)
    with pytest.raises(ReleaseError, match="no samples.*nothing to release"):
        release(empty, Workspace(tmp_path / "ws-empty"), "0.0.1")
    assert not (tmp_path / "ws-empty" / "releases" / "empty-0.0.1").exists()
    every = tmp_path / "all.txt"
    every.write_text("\n".join(read_table(out, columns=["sample_id"])["sample_id"]) + "\n")
    with pytest.raises(ReleaseError, match="no samples"):
        release(out, Workspace(tmp_path / "ws"), "2.0", exclude=every)
    assert not (tmp_path / "ws" / "releases" / "demo-2.0").exists()


class _Hub:
    """A loopback HTTP server standing in for the hub's address: it records what the Hugging Face client
    sends and answers 401, so a test sees the client's real network call without any network."""

    def __init__(self):
        import http.server
        import threading

        seen = self.seen = []

        class H(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                seen.append((self.command, self.path, self.headers.get("Authorization", "")))
                body = b'{"error": "Invalid credentials in Authorization header"}'
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_HEAD = do_POST = _answer

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()


def _cli_env(args: list[str], **env):
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_TOKEN", "TRANSFORMERS_OFFLINE")}
    return subprocess.run([sys.executable, "-m", "wordsmile.cli", *args], env={**base, **env},
                          capture_output=True, text=True, timeout=120)


def test_publish_to_the_hub_reaches_the_client_and_fails_in_one_line(rel, tmp_path):
    hub = _Hub()
    home = str(tmp_path / "hf-home")   # no stored token there
    url = "hf://datasets/someone/wordsmile-demo"
    try:
        # no token: said before any network call
        res = _cli_env(["publish", str(rel), url], HF_HOME=home, HF_ENDPOINT=hub.url)
        assert res.returncode == 2 and hub.seen == []
        assert res.stderr.strip().count("\n") == 0 and "no Hugging Face token" in res.stderr, res.stderr
        # a token: the CLI does not force the hub client offline, it reaches the (stand-in) hub with the
        # token, and the refusal is one line, no traceback
        res = _cli_env(["publish", str(rel), url], HF_HOME=home, HF_ENDPOINT=hub.url, HF_TOKEN="hf_wordsmile_test")
        assert res.returncode == 2, res.stderr
        assert hub.seen and all(a == "Bearer hf_wordsmile_test" for _, _, a in hub.seen), hub.seen
        assert any("someone/wordsmile-demo" in path for _, path, _ in hub.seen), hub.seen
        assert res.stderr.strip().count("\n") == 0 and f"publishing to {url} failed" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr and "OfflineModeIsEnabled" not in res.stderr
    finally:
        hub.close()
    # no network at all (nothing listens on the address): one line too
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    res = _cli_env(["publish", str(rel), url], HF_HOME=home, HF_ENDPOINT=dead, HF_TOKEN="hf_wordsmile_test")
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0, res.stderr
    assert f"publishing to {url} failed" in res.stderr and "Traceback" not in res.stderr


# ---------------------------------------------------------------- second pass (issue 15): releases that cannot leak or escape

import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import time  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def _copy(dataset: Path, tmp_path: Path) -> tuple[Path, Workspace]:
    import shutil

    ws = Workspace(tmp_path / "ws")
    d = ws.datasets / dataset.name
    shutil.copytree(dataset, d)
    return d, ws


def _cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "WORDSMILE_NO_PROGRESS": "1"}
    return subprocess.run([sys.executable, "-m", "wordsmile.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_release_refuses_symlinks_and_special_files(dataset, tmp_path):
    d, ws = _copy(dataset, tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0\n")
    (d / "report" / "x.png").symlink_to(secret)
    with pytest.raises(ReleaseError, match=r"report/x.png: is a symbolic link"):
        release(d, ws, "1.0")
    (d / "report" / "x.png").unlink()
    (d / "provenance").rename(d / "prov-real")
    (d / "provenance").symlink_to(d / "prov-real", target_is_directory=True)   # a linked folder too
    with pytest.raises(ReleaseError, match="provenance: is a symbolic link"):
        release(d, ws, "1.0")
    (d / "provenance").unlink()
    (d / "prov-real").rename(d / "provenance")
    os.mkfifo(d / "pipe")
    with pytest.raises(ReleaseError, match="pipe: is not a regular file"):
        release(d, ws, "1.0")
    os.unlink(d / "pipe")
    assert [p.name for p in ws.releases.iterdir() if not p.name.startswith(".")] == []
    assert verify(release(d, ws, "1.0")) == []


@pytest.mark.parametrize("field,value", [
    ("name", "../../escaped"), ("name", "/tmp/abs"), ("name", ".."), ("name", 7),
    ("sources", [{"source_id": "../../x", "kind": "folder", "license": ["CC0"], "samples": 1, "videos": 1}]),
    ("extra_files", ["../../../etc/hostname"]), ("extra_files", ["/etc/hostname"]), ("extra_files", ["nope.npz"]),
])
def test_release_takes_no_paths_from_dataset_json(dataset, tmp_path, field, value):
    d, ws = _copy(dataset, tmp_path)
    info = json.loads((d / "dataset.json").read_text())
    info[field] = value
    (d / "dataset.json").write_text(json.dumps(info))
    before = sorted(p for p in tmp_path.rglob("*") if "releases" not in p.parts)
    with pytest.raises(ReleaseError, match=f"dataset.json: field '{field}"):
        release(d, ws, "1.0", exclude=None)
    ids = tmp_path / "ids.txt"
    ids.write_text("v01s1\n")
    with pytest.raises(ReleaseError, match=f"dataset.json: field '{field}"):
        release(d, ws, "1.1", exclude=ids)
    after = sorted(p for p in tmp_path.rglob("*") if "releases" not in p.parts and p != ids)
    assert after == before and not any(p for p in ws.releases.iterdir() if not p.name.startswith("."))


def test_atomic_dir_without_replace_never_swaps_a_folder_that_appeared(tmp_path):
    from pipeline.atomic import atomic_dir

    dest = tmp_path / "rel"
    with pytest.raises(FileExistsError, match="meanwhile"):
        with atomic_dir(dest, replace=False) as tmp:
            (tmp / "mine.txt").write_text("second writer")
            dest.mkdir()
            (dest / "theirs.txt").write_text("first writer")   # the other writer finished meanwhile
    assert [p.name for p in dest.iterdir()] == ["theirs.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["rel"]   # the loser's temporary is gone


def test_two_concurrent_releases_of_one_version(dataset, tmp_path):
    d, ws = _copy(dataset, tmp_path)
    procs = [subprocess.Popen([sys.executable, "-m", "wordsmile.cli", "release", str(d), "--version", "2.0",
                               "--tar", "-w", str(ws.root)], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO), "WORDSMILE_NO_PROGRESS": "1"})
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    loser = outs[[p.returncode for p in procs].index(2)][1]
    assert "already exists" in loser and "Traceback" not in loser, loser
    rel = ws.releases / "demo-2.0"
    assert verify(rel) == [] and verify(ws.releases / "demo-2.0.tar.gz") == []
    assert sorted(p.name for p in ws.releases.iterdir()) == [".lock", "demo-2.0", "demo-2.0.tar.gz"]


def test_killed_tar_is_resumed_and_temporaries_cleaned(dataset, tmp_path):
    d, ws = _copy(dataset, tmp_path)
    rel = release(d, ws, "3.0", tar=True)
    tgz = ws.releases / "demo-3.0.tar.gz"
    want = tgz.read_bytes()
    # what a writer killed mid-archive leaves: no archive, a half-written temporary beside it
    tgz.unlink()
    stale = ws.releases / ".tmp-demo-3.0.tar.gz.k1ll3d.tar.gz"
    stale.write_bytes(want[: len(want) // 2])
    stale_dir = ws.releases / ".tmp-demo-4.0.x9"
    stale_dir.mkdir()
    (stale_dir / "dataset.json").write_text("{}")
    with pytest.raises(FileExistsError, match="immutable"):
        release(d, ws, "3.0")          # without --tar the folder is immutable as before
    assert release(d, ws, "3.0", tar=True) == rel
    assert tgz.read_bytes() == want    # byte-identical to the uninterrupted run's archive
    assert not stale.exists() and not stale_dir.exists()
    with pytest.raises(FileExistsError):
        release(d, ws, "3.0", tar=True)
    # an existing folder that fails verification is never archived
    _writable(rel / "dataset.json")
    tgz.unlink()
    (rel / "dataset.json").write_text("{}")
    with pytest.raises(ReleaseError, match="fails verification"):
        release(d, ws, "3.0", tar=True)
    assert not tgz.exists()


def test_publish_refuses_its_own_folder_and_publishes_archives(rel, tmp_path):
    for url in (str(rel / "mirror"), f"file://{rel}/mirror", str(rel)):
        with pytest.raises(ReleaseError, match="inside the release"):
            publish(rel, url)
    assert not (rel / "mirror").exists() and verify(rel) == []
    tgz = rel.parent / f"{rel.name}.tar.gz"
    out = publish(tgz, str(tmp_path / "pub"))
    assert Path(out) == tmp_path / "pub" / tgz.name and Path(out).read_bytes() == tgz.read_bytes()
    assert verify(out) == []
    with pytest.raises(FileExistsError):
        publish(tgz, str(tmp_path / "pub"))
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a tar at all")
    with pytest.raises(ReleaseError, match="not a gzip-compressed tar"):
        publish(bad, str(tmp_path / "pub2"))


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    import io

    with tarfile.open(path, "w:gz") as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return path


def _ti(name: str, size: int = 0, kind=tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size, ti.type, ti.linkname = size, kind, link
    return ti


def test_verify_checks_archives_from_their_listing_first(tmp_path):
    import gzip

    unpacked = lambda: sorted(p.name for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("wordsmile-verify-*"))  # noqa: E731
    before = unpacked()
    cases = {
        "dotdot.tar.gz": ([(_ti("rel/../../evil.txt", 4), b"evil")], "'..' path"),
        "abs.tar.gz": ([(_ti("/etc/evil.txt", 4), b"evil")], "absolute or '..'"),
        "link.tar.gz": ([(_ti("rel/x.png", kind=tarfile.SYMTYPE, link="/etc/shadow"), None)], "a link or special"),
        "dev.tar.gz": ([(_ti("rel/null", kind=tarfile.CHRTYPE), None)], "a link or special"),
    }
    for name, (members, needle) in cases.items():
        problems = verify(_tar(tmp_path / name, members))
        assert problems and needle in problems[0] and problems[0].startswith(name), (name, problems)
    many = _tar(tmp_path / "many.tar.gz", [(_ti(f"rel/f{i}", 0), b"") for i in range(50)])
    assert "more than 20 members" in verify(many, max_members=20)[0]
    assert "unpacks to more than 1000 bytes" in verify(
        _tar(tmp_path / "big.tar.gz", [(_ti("rel/a", 4000), b"\0" * 4000)]), max_bytes=1000)[0]
    # a gzip bomb: 200 MB of zeros in ~200 KB, refused from the listing (nothing unpacked)
    bomb = tmp_path / "bomb.tar.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as gz, tarfile.open(fileobj=gz, mode="w") as tf:
        ti = _ti("rel/zeros.bin", 200 << 20)

        class Zeros:
            left = 200 << 20

            def read(self, n=-1):
                n = self.left if n < 0 else min(n, self.left)
                self.left -= n
                return b"\0" * n
        tf.addfile(ti, Zeros())
    t0 = time.perf_counter()
    problems = verify(bomb)
    assert "decompression bomb" in problems[0] and bomb.stat().st_size < 1 << 20, problems
    assert time.perf_counter() - t0 < 2   # from the header: the 200 MB are never decompressed
    not_gz = tmp_path / "plain.tar.gz"
    not_gz.write_bytes(b"PK\x03\x04 this is a zip, not a tar.gz")
    assert "not a gzip-compressed tar" in verify(not_gz)[0]
    whole = _tar(tmp_path / "whole.tar.gz", [(_ti("rel/random.bin", 100_000), os.urandom(100_000))])
    trunc = tmp_path / "trunc.tar.gz"
    trunc.write_bytes(whole.read_bytes()[:50_000])
    assert "truncated or corrupt" in verify(trunc)[0], verify(trunc)
    assert unpacked() == before
    # the CLI: exit 1, one FAIL line per problem, never a traceback
    for f in ("dotdot.tar.gz", "link.tar.gz", "plain.tar.gz", "trunc.tar.gz"):
        r = _cli("verify", tmp_path / f, cwd=tmp_path)
        assert r.returncode == 1 and r.stderr.startswith("FAIL ") and "Traceback" not in r.stderr, r.stderr


def test_card_escapes_manifest_description_and_licence(dataset, tmp_path):

    from dataset.assemble.card import write_card

    meta = json.loads((dataset / "dataset.json").read_text())
    meta["description"] = ("Nice data.\n---\nlicense: mit\n---\n# Injected heading\n<script>alert(1)</script> "
                           "[click](javascript:alert(1)) ![img](http://evil/x.png)")
    meta["sources"][0]["license"] = ["CC-BY | <b>bold</b> [x](javascript:y)"]
    import shutil

    from pipeline.formats.dataset import read_table

    d = tmp_path / "ds"
    shutil.copytree(dataset, d)
    write_card(d, meta, read_table(d))
    text = (d / "README.md").read_text()
    body = text.split("\n---\n", 1)[1]
    for bad in ("<script>", "<b>", "](javascript:", "![img](", "\n# Injected", "\n---\nlicense: mit"):
        assert bad not in body, bad
    assert "&lt;script&gt;" in body and "Injected heading" in body and text.count("\n---\n") == 1
