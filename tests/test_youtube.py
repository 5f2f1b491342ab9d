"""The yt-dlp route against a real loopback HTTP server (127.0.0.1 only): a page with <video> and
<track>, a direct mp4, a 404, a 429 and a truncated transfer each end in the right record; reruns
resume from the archive and done markers; spans download only their sections.

The test server is allowed by name (`sources.youtube.allow_hosts=[127.0.0.1:PORT]`), not by opening
all private addresses: a second loopback server (another port) plays the internal service a redirect
or an embedded URL must never reach."""
from __future__ import annotations

import http.server
import json
import shutil
from pathlib import Path

import pytest

from conftest import loopback_server
import yaml

from stages import ingest_manifest
from extract.sources.youtube import classify
from pipeline.config import load_config
from pipeline.context import StageContext
from pipeline.manifest import load_manifest
from pipeline.records import Reason

FAST = ["sources.youtube.sleep_s=0",
        "sources.youtube.rate_limit_per_min=0", "sources.youtube.retries=1", "sources.youtube.backoff_s=0",
        "sources.youtube.socket_timeout_s=5"]

ROLLING_HTML = """<!DOCTYPE html><html><head><title>rolling captions page</title></head><body>
<video src="clip.mp4"><track kind="captions" srclang="en" src="rolling.en.vtt"></video></body></html>"""


class _Handler(http.server.SimpleHTTPRequestHandler):
    hits: list[str] = []
    agents: list[tuple[str, str]] = []
    internal = ""   # base URL of the "internal" server (redirect / embedded targets)

    def log_message(self, *a):   # keep test output clean
        pass

    def do_GET(self):
        type(self).hits.append(self.path)
        type(self).agents.append((self.path, self.headers.get("Icy-MetaData", "")))   # ffmpeg sends it
        if self.path.startswith("/ratelimited"):
            self.send_response(429)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/to-internal"):   # 302 to a private address the policy does not allow
            self.send_response(302)
            self.send_header("Location", f"{self.internal}/clip.mp4")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/embedded.html"):   # our video, the internal server's captions
            body = (f'<!DOCTYPE html><html><head><title>embedded</title></head><body><video src="clip.mp4">'
                    f'<track kind="captions" srclang="en" src="{self.internal}/secret.en.vtt"></video>'
                    f'</body></html>').encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path.startswith("/drip.mp4"):   # one byte every 0.4 s: never idle long enough to time out
            import time

            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b"\0")
                    self.wfile.flush()
                    time.sleep(0.4)
            except OSError:
                pass
            self.close_connection = True
            return
        if self.path.startswith("/truncated.mp4"):
            data = (Path(self.directory) / "clip.mp4").read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(data)))   # promises more than it sends
            self.end_headers()
            self.wfile.write(data[: len(data) // 3])
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture(scope="module")
def internal(sample_dir, tmp_path_factory):
    """The 'internal' service: another loopback port, never allowed. Counts every request it gets."""
    root = tmp_path_factory.mktemp("internal")
    shutil.copy(sample_dir / "web" / "clip.mp4", root / "clip.mp4")
    shutil.copy(next((sample_dir / "web").glob("*.vtt")), root / "secret.en.vtt")
    handler = type("I", (_Handler,), {"hits": [], "agents": []})
    with loopback_server(handler, root) as url:
        yield url, handler


@pytest.fixture(scope="module")
def server(sample_dir, tmp_path_factory, internal):
    root = tmp_path_factory.mktemp("www")
    for f in (sample_dir / "web").iterdir():
        shutil.copy(f, root / f.name)
    (root / "rolling.html").write_text(ROLLING_HTML)
    (root / "redir-video.html").write_text(ROLLING_HTML.replace('src="clip.mp4"', 'src="to-internal.mp4"')
                                           .replace("rolling.en.vtt", "clip.en.vtt"))
    # real recorded speech on the talking face, and no captions anywhere: the text is in the audio only
    shutil.copy(sample_dir / "speech" / "folder" / "speech_01.mp4", root / "speech.mp4")
    (root / "speech.html").write_text('<!DOCTYPE html><html><head><title>a talk without captions</title></head>'
                                      '<body><video src="speech.mp4"></video></body></html>')
    handler = type("H", (_Handler,), {"hits": [], "agents": [], "internal": internal[0]})
    with loopback_server(handler, root) as url:
        _ALLOWED[:] = [url.split("//", 1)[1]]
        yield url, handler


_ALLOWED: list[str] = []   # host:port of the test server, set by the `server` fixture


def _run(tmp_path, ws, sources, overrides=FAST, allow=True):
    p = tmp_path / "m.yaml"
    p.write_text(yaml.safe_dump({"name": "yt", "license": "CC-BY-4.0", "sources": sources}))
    m = load_manifest(p)
    allowed = [f"sources.youtube.allow_hosts={json.dumps(_ALLOWED)}"] if allow else []
    ctx = StageContext(load_config(None, list(overrides) + allowed), ws, ws.new_run_dir())
    return ingest_manifest(m, ctx)


def _by_item(recs):
    return {r.item_id: r for r in recs}


@pytest.mark.parametrize("msg,reason", [
    ("ERROR: [youtube] abc: Video unavailable. This video has been removed by the uploader", Reason.DL_UNAVAILABLE),
    ("ERROR: [youtube] abc: Private video. Sign in if you've been granted access", Reason.DL_UNAVAILABLE),
    ("ERROR: [youtube] abc: The uploader has not made this video available in your country", Reason.DL_GEO),
    ("ERROR: [youtube] abc: Sign in to confirm your age. This video may be inappropriate for some users.",
     Reason.DL_AGE),
    ("ERROR: [youtube] abc: Sign in to confirm you’re not a bot. Use --cookies", Reason.DL_BOT_CHECK),
    ("ERROR: Unable to download webpage: HTTP Error 429: Too Many Requests", Reason.DL_RATE_LIMITED),
    ("ERROR: Unable to download webpage: <urlopen error [Errno -3] Temporary failure in name resolution>",
     Reason.DL_NETWORK),
    ("ERROR: [download] Got error: 17160 bytes read, 34322 more expected", Reason.DL_NETWORK),
    ("ERROR: something nobody has seen before", Reason.DL_UNKNOWN),
])
def test_classify(msg, reason):
    assert classify(msg) is reason


def test_loopback_downloads_and_failures(server, sample_dir, tmp_path, workspace):
    base, handler = server
    src = {"id": "web", "kind": "youtube",
           "urls": [f"{base}/index.html", f"{base}/rolling.html", f"{base}/clip.mp4", f"{base}/missing.mp4",
                    f"{base}/ratelimited.mp4", f"{base}/truncated.mp4", "file:///etc/hostname",
                    "gopher://example.com/x"]}
    n0 = len(handler.hits)
    df, recs = _run(tmp_path, workspace, [src])
    assert handler.hits[n0:].count("/index.html") == 1   # the listing's extraction is reused to download
    r = _by_item(recs)
    assert r["web/index-1"].ok and r["web/index-1"].figures["caption_kind"] == "manual"
    assert r["web/rolling-1"].ok and r["web/rolling-1"].figures["rolling"] is True
    # a direct mp4 has no captions: downloaded, and left to the speech stage as a text-less placeholder
    assert r["web/clip"].ok and r["web/clip"].figures["n_segments"] == 0
    assert df[df.video_id == "clip"].text_source.tolist() == ["none"]
    assert r[f"web/{base}/missing.mp4"].reason is Reason.DL_UNAVAILABLE
    rl = r[f"web/{base}/ratelimited.mp4"]
    assert rl.reason is Reason.DL_RATE_LIMITED and rl.figures["attempts"] == 2   # retried once: transient
    assert sum(h.startswith("/ratelimited") for h in handler.hits) == 2
    assert r["web/truncated"].reason is Reason.DL_NETWORK and r["web/truncated"].status.value == "failed"
    assert r["web/file:///etc/hostname"].reason is Reason.URL_REFUSED
    assert "allow_file_urls" in r["web/file:///etc/hostname"].detail
    assert r["web/gopher://example.com/x"].reason is Reason.URL_REFUSED

    idx = json.loads((sample_dir / "sample.json").read_text())
    sents = next(c for c in idx["clips"] if c["kind"] == "web")["sentences"]
    page = df[df.video_id == "index-1"]
    assert list(page["text"]) == [s["text"] for s in sents]
    assert list(page["start"]) == pytest.approx([s["start"] for s in sents], abs=0.01)
    row = page.iloc[0]
    assert row["url"] == f"{base}/index.html" and row["title"].startswith("wordsmile sample clip")
    assert json.loads(row["tool_versions"])["yt-dlp"] and row["downloaded_at"] and row["license"] == "CC-BY-4.0"
    assert Path(row["video_path"]).exists() and len(row["video_hash"]) == 64
    folder = workspace.sources / "web" / "index-1"
    assert (folder / "index-1.info.json").exists() and (folder / "index-1.en.vtt").exists()
    # rolling auto captions: repeats removed, word times kept, the same sentences recovered
    roll = df[df.video_id == "rolling-1"]
    assert " ".join(roll["text"]).split() == " ".join(s["text"] for s in sents).split()
    assert all(json.loads(w) for w in roll["words"])

    # rerun: nothing is downloaded again (archive + done markers), same table
    n_before = len(handler.hits)
    df2, recs2 = _run(tmp_path, workspace, [src | {"urls": src["urls"][:3]}])
    assert not [h for h in handler.hits[n_before:] if h.endswith((".mp4", ".vtt", ".html"))]
    assert df2.reset_index(drop=True).equals(df[df.video_id != "truncated"].reset_index(drop=True))
    assert _by_item(recs2)["web/index-1"].figures["cached"] is True

    # files gone but the id still in the archive: skipped on purpose, with the fix named
    shutil.rmtree(folder)
    _, recs3 = _run(tmp_path, workspace, [src | {"urls": [f"{base}/index.html"]}])
    r3 = _by_item(recs3)["web/index-1"]
    assert r3.reason is Reason.ALREADY_DOWNLOADED and "archive.txt" in r3.detail


def test_spans_and_url_policy(server, sample_dir, tmp_path, workspace):
    base, _ = server
    idx = json.loads((sample_dir / "sample.json").read_text())
    sents = next(c for c in idx["clips"] if c["kind"] == "web")["sentences"]
    cut = round((sents[0]["end"] + sents[1]["start"]) / 2, 2)
    src = {"id": "spans", "kind": "youtube", "urls": [f"{base}/index.html"],
           "spans": {f"{base}/index.html": [{"start": 0.0, "end": cut}, {"start": cut, "end": 4.0}]}}
    df, recs = _run(tmp_path, workspace, [src])
    assert [r.reason for r in recs] == [Reason.OK, Reason.OK]
    assert sorted(df["video_id"]) == sorted([f"index-1.0.000-{cut:.3f}", f"index-1.{cut:.3f}-4.000"])
    second = df[df.video_id == f"index-1.{cut:.3f}-4.000"].iloc[0]
    assert second["text"] == sents[1]["text"]
    assert second["start"] == pytest.approx(sents[1]["start"] - cut, abs=0.02)   # in the span file's timeline
    from pipeline.media import probe
    assert probe(second["video_path"]).duration == pytest.approx(4.0 - cut, abs=0.15)

    # changed spans: fetched again although the id is in the download archive
    df, recs = _run(tmp_path, workspace, [src | {"spans": {"index-1": [{"start": 0.0, "end": cut}]}}])
    assert [r.reason for r in recs] == [Reason.OK] and list(df["video_id"]) == [f"index-1.0.000-{cut:.3f}"]
    assert recs[0].figures["cached"] is False

    # without the opt-in, loopback addresses are refused before any request
    _, recs = _run(tmp_path, workspace, [{"id": "priv", "kind": "youtube", "urls": [f"{base}/index.html"]}],
                   allow=False)
    assert recs[0].reason is Reason.URL_REFUSED and "allow_hosts" in recs[0].detail


def test_table_rows_with_urls(server, tmp_path, workspace):
    base, _ = server
    (tmp_path / "t.csv").write_text("video,start,end,text\n"
                                    f"{base}/clip.mp4,0.5,1.5,Downloaded by URL.\n"
                                    f"{base}/clip.mp4,2.0,3.0,Same video again.\n"
                                    f"{base}/missing.mp4,0,1,Gone.\n")
    df, recs = _run(tmp_path, workspace, [{"id": "tab", "kind": "table", "path": "t.csv"}])
    r = _by_item(recs)
    assert r["tab/row1"].ok and r["tab/row2"].ok and r["tab/row3"].reason is Reason.DL_UNAVAILABLE
    assert "t.csv row 3" in r["tab/row3"].detail
    assert set(df["video_id"]) == {"clip"} and df["url"].iloc[0] == f"{base}/clip.mp4"
    assert (workspace.sources / "tab" / "archive.txt").read_text().count("clip") == 1


def test_file_urls_only_when_enabled(sample_dir, tmp_path, workspace):
    url = (sample_dir / "web" / "clip.mp4").resolve().as_uri()
    _, recs = _run(tmp_path, workspace, [{"id": "f", "kind": "youtube", "urls": [url]}])
    assert recs[0].reason is Reason.URL_REFUSED
    _, recs = _run(tmp_path, workspace, [{"id": "f", "kind": "youtube", "urls": [url]}],
                   overrides=FAST + ["sources.youtube.allow_file_urls=true"])
    # downloaded through yt-dlp (no captions next to a bare file: a placeholder for the speech stage)
    assert recs[0].ok and "no manual or automatic captions" in recs[0].figures["note"]
    assert (workspace.sources / "f" / "clip" / "clip.mp4").exists()


def test_caption_choice_manual_first(tmp_path):
    """Which written caption file a video gets: the first configured language, manual or auto."""
    from extract.sources.youtube import YouTubeFetcher
    from pipeline.config.sources import YouTubeConfig

    folder = tmp_path / "vid"
    folder.mkdir()
    for name in ("vid.mp4", "vid.en.vtt", "vid.de.vtt"):
        (folder / name).write_bytes(b"x")
    info = {"id": "vid", "title": "T", "channel": "C", "webpage_url": "https://example.org/v",
            "requested_downloads": [{"filepath": str(folder / "vid.mp4")}],
            "subtitles": {"de": [{"url": "https://example.org/de.vtt"}]},
            "automatic_captions": {"en": [{"url": "https://example.org/en-auto.vtt"}]},
            "requested_subtitles": {"en": {"url": "https://example.org/en-auto.vtt", "ext": "vtt",
                                           "filepath": str(folder / "vid.en.vtt")},
                                    "de": {"url": "https://example.org/de.vtt", "ext": "vtt",
                                           "filepath": str(folder / "vid.de.vtt")}}}
    f = YouTubeFetcher(tmp_path, YouTubeConfig(caption_langs=["en", "de"]), ffmpeg="ffmpeg")
    got = f._finish(folder, "vid", "https://example.org/v", [], info)
    assert got.captions.name == "vid.en.vtt" and got.caption_kind == "auto"
    assert got.info["uploader"] == "C" and json.loads((folder / "done.json").read_text())["captions"] == "vid.en.vtt"
    f = YouTubeFetcher(tmp_path, YouTubeConfig(caption_langs=["de", "en"]), ffmpeg="ffmpeg")
    got = f._finish(folder, "vid", "https://example.org/v", [], info)
    assert got.captions.name == "vid.de.vtt" and got.caption_kind == "manual"


def test_rate_limiter_spaces_requests():
    import time

    from extract.sources.youtube import RateLimiter

    t = time.monotonic()
    for _ in range(3):
        RateLimiter.wait(per_min=600, sleep_s=0)   # 0.1 s apart
    assert time.monotonic() - t >= 0.18


def test_redirect_and_embedded_private_urls_refused(server, internal, tmp_path, workspace):
    """A 302 to a private address and a page whose <track> points at one: refused on the wire, the
    internal server never sees a request, no segment comes from it."""
    base, _ = server
    ibase, ihandler = internal
    n0 = len(ihandler.hits)
    df, recs = _run(tmp_path, workspace, [{"id": "ssrf", "kind": "youtube",
                                           "urls": [f"{base}/to-internal.mp4", f"{base}/embedded.html"]}])
    assert ihandler.hits[n0:] == []                       # nothing forbidden was fetched
    assert len(df) == 0 and len(recs) == 2
    for r in recs:
        assert r.reason is Reason.URL_REFUSED, (r.item_id, r.reason, r.detail)
        assert ibase.split("//")[1] in r.detail and "private" in r.detail
    # the same pages with the internal server allowed by name: the redirect is followed, so the
    # refusal above came from the policy, not from a broken page
    _ALLOWED.append(ibase.split("//")[1])
    try:
        df, recs = _run(tmp_path, workspace, [{"id": "ssrf2", "kind": "youtube", "urls": [f"{base}/to-internal.mp4"]}])
    finally:
        _ALLOWED.pop()
    assert recs[0].ok and recs[0].figures["n_segments"] == 0 and "/clip.mp4" in ihandler.hits[n0:]


def test_section_download_by_ffmpeg_is_guarded_too(server, internal, tmp_path, workspace, monkeypatch):
    """Span downloads are ffmpeg's own requests: they pass the guard as well (its http_proxy), even
    with no_proxy naming the address (ffmpeg would go around the proxy for it: we remove it)."""
    base, handler = server
    ibase, ihandler = internal
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    n0, a0 = len(ihandler.hits), len(handler.agents)
    url = f"{base}/redir-video.html"
    _, recs = _run(tmp_path, workspace, [{"id": "sect", "kind": "youtube", "urls": [url],
                                          "spans": {url: [{"start": 0.0, "end": 1.5}]}}])
    assert recs[0].reason is Reason.URL_REFUSED and ibase.split("//")[1] in recs[0].detail, recs[0].detail
    assert any(p.startswith("/to-internal") and icy for p, icy in handler.agents[a0:])   # ffmpeg asked
    assert ihandler.hits[n0:] == []


def test_unresolvable_name_refused(tmp_path, workspace):
    _, recs = _run(tmp_path, workspace, [{"id": "dns", "kind": "youtube", "urls": ["http://no-such-host.invalid/v"]}])
    assert recs[0].reason is Reason.URL_REFUSED and "does not resolve" in recs[0].detail


def test_drip_server_hits_the_deadline(server, tmp_path, workspace):
    """One byte every 0.4 s never trips the 5 s socket timeout; the 3 s download deadline cuts it."""
    import time

    base, _ = server
    t = time.monotonic()
    _, recs = _run(tmp_path, workspace, [{"id": "drip", "kind": "youtube", "urls": [f"{base}/drip.mp4"]}],
                   overrides=FAST + ["sources.youtube.download_deadline_s=3", "sources.youtube.retries=2"])
    took = time.monotonic() - t
    assert recs[0].reason is Reason.DL_TIMEOUT and "download_deadline_s" in recs[0].detail, recs[0].detail
    assert recs[0].status.value == "failed" and took < 15   # not retried: a deadline is final


def test_item_deadline_spans_attempts(server, tmp_path, workspace):
    base, _ = server
    _, recs = _run(tmp_path, workspace, [{"id": "drip2", "kind": "youtube", "urls": [f"{base}/drip.mp4"]}],
                   overrides=FAST + ["sources.youtube.item_deadline_s=2"])
    assert recs[0].reason is Reason.DL_TIMEOUT and "item_deadline_s" in recs[0].detail


def test_credentials_never_written(server, tmp_path, workspace, caplog):
    """user:pass@ and ?token= reach the server (it is their URL) but no output: segment table, records,
    listing.json, done.json, info.json, logs, the run's manifest copy."""
    import logging

    from wordsmile.build import Build

    base, handler = server
    host = base.split("//", 1)[1]
    url = f"http://alice:s3cr3tpw@{host}/index.html?token=t0k3nvalue&v=1"
    caplog.set_level(logging.DEBUG)
    src = {"id": "cred", "kind": "youtube", "urls": [url, f"http://bob:hunter2pw@{host}/missing.mp4?sig=s1gvalue"]}
    df, recs = _run(tmp_path, workspace, [src])
    assert any(h.startswith("/index.html?token=t0k3nvalue") for h in handler.hits)   # the real URL was used
    assert len(df) > 0 and df["url"].iloc[0] == f"http://REDACTED@{host}/index.html?token=REDACTED&v=1"
    assert {r.reason for r in recs} == {Reason.OK, Reason.DL_UNAVAILABLE}
    secrets = ("s3cr3tpw", "t0k3nvalue", "hunter2pw", "s1gvalue", "alice", "bob:")
    written = [df.to_csv(), json.dumps([r.to_json() for r in recs]), caplog.text]
    written += [p.read_text(errors="replace") for p in (workspace.sources / "cred").rglob("*")
                if p.is_file() and p.suffix in (".json", ".txt", ".vtt")]
    assert len(written) > 4
    for text in written:
        for sec in secrets:
            assert sec not in text, (sec, text[:300])
    # the manifest copied into the run folder
    m = tmp_path / "cred.yaml"
    m.write_text(yaml.safe_dump({"name": "cred", "license": "CC-BY-4.0", "sources": [src]}))
    b = Build(m, workspace.root)
    b.open_run()
    copy = (b.run_dir / "manifest.yaml").read_text()
    assert "REDACTED@" in copy and not any(sec in copy for sec in secrets)


def test_js_runtime_available_to_our_ytdlp():
    """yt-dlp, given the options our fetcher builds, finds deno (the PyPI package's binary) and the
    EJS challenge-solver scripts in the version it expects. Offline: nothing is requested."""
    import yt_dlp

    from extract.sources.youtube import YouTubeFetcher, js_status
    from pipeline.config.sources import YouTubeConfig

    f = YouTubeFetcher(Path("/tmp") / "wordsmile-jsrt-test", YouTubeConfig(), ffmpeg="ffmpeg")
    opts = f._base_opts()
    assert opts["js_runtimes"]["deno"]["path"].endswith("deno")
    with yt_dlp.YoutubeDL(opts) as ydl:
        info = ydl._js_runtimes["deno"].info
    assert info is not None and info.supported and info.version.count(".") == 2
    st = js_status()
    assert st["runtime_version"] == info.version and st["ejs_version"]
    assert st["ejs_version"].split(".")[:2] == st["ejs_expected"].split(".")[:2]


def test_youtube_options_from_config():
    from extract.sources.youtube import YouTubeFetcher
    from pipeline.config.sources import YouTubeConfig

    cfg = YouTubeConfig(cookiefile="~/cookies.txt", player_clients=["default", "mweb"],
                        pot_provider_url="http://127.0.0.1:4416", sleep_requests_s=1.0, sleep_download_s=2.0)
    f = YouTubeFetcher(Path("/tmp") / "wordsmile-opts-test", cfg, ffmpeg="ffmpeg")
    o = f._base_opts()
    assert o["cookiefile"].endswith("/cookies.txt") and "~" not in o["cookiefile"]
    assert o["extractor_args"]["youtube"]["player_client"] == ["default", "mweb"]
    assert o["extractor_args"]["youtubepot-bgutilhttp"]["base_url"] == ["http://127.0.0.1:4416"]
    assert o["sleep_interval_requests"] == 1.0 and (o["sleep_interval"], o["max_sleep_interval"]) == (2.0, 4.0)
    assert f._policy().check_url("http://127.0.0.1:4416/get_pot") == ""        # the PO token server only
    assert "private" in f._policy().check_url("http://127.0.0.1:4417/")


def test_doctor_reports_js_runtime_and_ejs(tmp_path):
    from pipeline.config.sources import YouTubeConfig
    from wordsmile.doctor import _check_js

    rt, ejs = _check_js(YouTubeConfig())
    assert rt[:2] == ("JS runtime", "ok") and rt[2].startswith("deno 2.") and ejs[:2] == ("EJS scripts", "ok")
    rt, _ = _check_js(YouTubeConfig(js_runtime_path=str(tmp_path / "no-deno-here")))
    assert rt[1] == "missing" and "pip install deno" in rt[3]


def test_a_page_without_captions_becomes_samples_from_its_speech(server, sample_dir, tmp_path):
    """A "YouTube" page with no captions at all: downloaded, then transcribed by the speech stage; the
    texts are the spoken words and the spans hold them (truth: the LibriVox reference alignments)."""
    from test_speech import wer

    from wordsmile.build import Build

    base, _ = server
    m = tmp_path / "m.yaml"
    m.write_text(yaml.safe_dump({"name": "talk", "license": "CC0-1.0",
                                 "sources": [{"id": "web", "kind": "youtube", "urls": [f"{base}/speech.html"]}]}))
    allowed = [f"sources.youtube.allow_hosts={json.dumps(_ALLOWED)}"]
    b = Build(m, tmp_path / "ws", overrides=FAST + allowed)
    b.run(["ingest", "speech"])
    df, recs = b.load_state("speech")
    idx = json.loads((sample_dir / "sample.json").read_text())
    truth = next(c for c in idx["clips"] if c["path"].endswith("speech_01.mp4"))["sentences"]
    assert len(df) == len(truth) and set(df.text_source) == {"asr"} and df.source_kind.tolist() == ["youtube"] * 2
    for t, row in zip(truth, df.sort_values("start").itertuples()):
        assert wer(t["text"], row.text) <= 0.1, (t["text"], row.text)
        assert abs(row.start - t["start"]) <= 0.15 and abs(row.end - t["end"]) <= 0.2
        assert row.url.endswith("speech.html") or row.url.endswith("speech.mp4")
