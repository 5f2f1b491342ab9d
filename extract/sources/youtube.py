"""Downloads through the yt-dlp Python API: videos, playlists and channels, optional spans.

Layout under the source folder (`WORKSPACE/sources/SOURCE_ID/`):
  archive.txt            yt-dlp download archive: a rerun never fetches a finished id again
  listing.json           URL → video ids, so a rerun of single-video URLs needs no request at all
  VIDEO_ID/VIDEO_ID.mp4  media (or VIDEO_ID.START-END.mp4 per span), captions VIDEO_ID.LANG.vtt,
                         VIDEO_ID.info.json (title, uploader, licence, URL) and done.json (our marker,
                         written last: a folder without it is unfinished and is fetched again)

Failures are classified from yt-dlp's messages (`classify`) into the `download.*` reasons; only
network errors and rate limiting are retried, with exponential backoff and jitter.

Every request goes through the address guard (netguard.GuardProxy: the URL policy on resolved
addresses, and the overall deadline); every URL written anywhere is redacted (pipeline/redact.py).
YouTube's challenge solver needs a JavaScript runtime: `js_runtimes` names it explicitly.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from extract.sources.common import MEDIA_EXTS
from extract.sources.netguard import AddressPolicy, GuardProxy
from pipeline.atomic import write_json
from pipeline.config.sources import YouTubeConfig
from pipeline.media import ffmpeg_exe
from pipeline.records import Reason
from pipeline.redact import redact_obj, redact_text, redact_url

TRANSIENT = {Reason.DL_NETWORK, Reason.DL_RATE_LIMITED}

# Ordered: the first matching class wins ("Sign in to confirm you're not a bot" is a bot check,
# "Sign in to confirm your age" is an age gate).
_CLASSES: list[tuple[Reason, tuple[str, ...]]] = [
    (Reason.DL_BOT_CHECK, ("not a bot", "confirm you're not", "confirm you’re not", "captcha")),
    (Reason.DL_RATE_LIMITED, ("http error 429", "too many requests", "rate-limit", "rate limit",
                              "ratelimit", "unusual traffic")),
    (Reason.DL_AGE, ("confirm your age", "age-restricted", "age restricted", "age-gated", "age gate",
                     "inappropriate for some users", "age verification")),
    (Reason.DL_GEO, ("available in your country", "geo restrict", "geo-restrict", "from your location", "geo-block", "geoblock",
                     "blocked it in your country", "not available from your location", "in your region")),
    (Reason.DL_UNAVAILABLE, ("http error 404", "http error 410", "not found", "video unavailable",
                             "private video", "is private", "has been removed", "been terminated", "deleted",
                             "no longer available", "is not available", "does not exist", "members-only",
                             "join this channel", "premieres in", "unsupported url", "http error 403",
                             "requested format is not available", "no video formats found")),
    (Reason.DL_NETWORK, ("timed out", "timeout", "connection refused", "connection reset", "connection aborted",
                         "name or service not known", "temporary failure in name resolution",
                         "nodename nor servname", "network is unreachable", "no route to host",
                         "remote end closed", "incompleteread", "incomplete read", "bytes read",
                         "more expected", "content too short", "did not get any data blocks",
                         "eof occurred", "ssl", "http error 500", "http error 502", "http error 503",
                         "http error 504", "unable to download", "urlopen error", "transporterror",
                         "unable to connect", "failed to resolve", "getaddrinfo")),
]


BOT_CHECK_FIX = ("YouTube asks this address for a bot check: give it cookies of a logged-in browser session "
                 "(sources.youtube.cookiefile), a PO token provider (sources.youtube.pot_provider_url) "
                 "and slower requests (sleep_requests_s, rate_limit_per_min); retrying at once does not help")


def classify(message: str) -> Reason:
    """Map a yt-dlp error message to a `download.*` reason (DL_UNKNOWN when nothing matches)."""
    m = message.lower()
    for reason, needles in _CLASSES:
        if any(n in m for n in needles):
            return reason
    return Reason.DL_UNKNOWN


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _clean_msg(msg: str) -> str:
    msg = _ANSI.sub("", str(msg)).strip()
    return re.sub(r"^ERROR:\s*", "", msg)[:500]


def ytdlp_version() -> str:
    from yt_dlp.version import __version__
    return __version__


def js_runtimes(cfg: YouTubeConfig) -> dict:
    """yt-dlp's `js_runtimes` option: the configured runtime with an explicit path (for deno, the
    binary of the installed `deno` PyPI package unless `js_runtime_path` says otherwise), so YouTube's
    challenge solver does not depend on PATH."""
    path = cfg.js_runtime_path
    if not path and cfg.js_runtime == "deno":
        try:
            from deno import find_deno_bin

            path = find_deno_bin()
        except (ImportError, FileNotFoundError):
            path = ""
    return {cfg.js_runtime: {"path": path} if path else {}}


def js_status(cfg: YouTubeConfig | None = None) -> dict:
    """What yt-dlp, given our options, finds: the JS runtime (name, version, path) and the EJS
    challenge-solver scripts (package version, the version this yt-dlp expects). Offline."""
    import yt_dlp

    cfg = cfg or YouTubeConfig()
    out = {"runtime": cfg.js_runtime, "runtime_version": "", "runtime_path": "", "runtime_supported": False,
           "ejs_version": "", "ejs_expected": ""}
    with yt_dlp.YoutubeDL({"quiet": True, "no_warnings": True, "js_runtimes": js_runtimes(cfg)}) as ydl:
        rt = ydl._js_runtimes.get(cfg.js_runtime)
        info = rt.info if rt is not None else None
        if info is not None:
            out.update(runtime_version=info.version, runtime_path=info.path, runtime_supported=bool(info.supported))
    try:
        from yt_dlp_ejs import version as ejs_version

        out["ejs_version"] = ejs_version
    except ImportError:
        pass
    try:
        from yt_dlp.extractor.youtube.jsc._builtin import vendor

        out["ejs_expected"] = vendor.VERSION
    except (ImportError, AttributeError):
        pass
    return out


class DownloadFailure(Exception):
    def __init__(self, reason: Reason, detail: str, attempts: int = 1):
        self.reason, self.detail, self.attempts = Reason(reason), detail, attempts
        super().__init__(detail)


@dataclass
class MediaPart:
    path: Path
    span_start: float = 0.0          # where this file starts in the original video (spans)
    span_end: float | None = None    # None: the whole video


@dataclass
class Fetched:
    video_id: str
    url: str
    parts: list[MediaPart]
    captions: Path | None
    caption_kind: str                # manual / auto / ""
    info: dict = field(default_factory=dict)   # title, uploader, license, webpage_url, extractor
    downloaded_at: str = ""
    cached: bool = False
    archived_only: bool = False      # in archive.txt but our files are gone


class RateLimiter:
    """Process-wide pacing: at most `per_min` request starts per minute and `sleep_s` between them."""

    _lock = threading.Lock()
    _last = 0.0

    @classmethod
    def wait(cls, per_min: int, sleep_s: float) -> None:
        gap = max(sleep_s, 60.0 / per_min if per_min > 0 else 0.0)
        if gap <= 0:
            return
        with cls._lock:
            now = time.monotonic()
            delay = cls._last + gap - now
            cls._last = max(now, cls._last + gap)
        if delay > 0:
            time.sleep(delay)


_warned_global = False


def _global_rate_limit(name: str, log) -> None:
    """Take a slot of a Prefect server-wide rate limit (a global concurrency limit with slot decay,
    created by `wordsmile prefect deploy`), so every worker on every machine shares one YouTube pace.
    The per-process RateLimiter above still applies; if the server cannot be reached we go on with it."""
    global _warned_global
    if not name:
        return
    try:
        from prefect.concurrency.sync import rate_limit

        rate_limit(name, strict=False)
    except Exception as e:  # noqa: BLE001 - pacing is best effort; the local limiter still holds
        if not _warned_global:
            _warned_global = True
            log.warning("global rate limit %r unavailable (%s): pacing per process only", name, e)


class _Silent:
    """yt-dlp logger: keep warnings/errors for our log, drop progress chatter."""

    def __init__(self, log):
        self.log = log

    def debug(self, msg):
        pass

    def info(self, msg):
        pass

    def warning(self, msg):
        if self.log:
            self.log.debug("yt-dlp: %s", redact_text(_clean_msg(msg)))

    def error(self, msg):
        if self.log:
            self.log.debug("yt-dlp: %s", redact_text(_clean_msg(msg)))


def _safe_name(video_id: str) -> str:
    """yt-dlp ids become folder names: keep them safe and short."""
    s = re.sub(r"[^A-Za-z0-9._-]", "_", video_id).strip("._") or "video"
    return s[:100]


class YouTubeFetcher:
    def __init__(self, root: Path, cfg: YouTubeConfig, log=None, ffmpeg: str | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.cfg = cfg
        self.log = log
        self.ffmpeg = ffmpeg or ffmpeg_exe()
        self.archive = self.root / "archive.txt"
        self._listing_path = self.root / "listing.json"
        self._listing_lock = threading.Lock()
        self._prefetched: dict[str, dict] = {}
        try:
            self._listing = json.loads(self._listing_path.read_text()) if self._listing_path.exists() else {}
        except (OSError, ValueError):
            self._listing = {}

    # ------------------------------------------------------------ options and retries

    def _base_opts(self) -> dict:
        c = self.cfg
        backoff = c.backoff_s
        opts = {
            "quiet": True, "no_warnings": True, "noprogress": True, "logger": _Silent(self.log),
            "socket_timeout": c.socket_timeout_s, "retries": c.retries, "fragment_retries": c.retries,
            "extractor_retries": 0,   # our own loop retries whole extractions (transient classes only)
            "retry_sleep_functions": {"http": lambda n: backoff * 2 ** n, "fragment": lambda n: backoff * 2 ** n},
            "enable_file_urls": c.allow_file_urls, "ffmpeg_location": self.ffmpeg,
            "sleep_interval_requests": max(0.0, c.sleep_requests_s),
            "sleep_interval_subtitles": c.sleep_s if c.sleep_s > 0 else 0,
            "js_runtimes": js_runtimes(c),
            "hls_prefer_native": True,   # fragments through yt-dlp (and the guard), not a bare ffmpeg
        }
        if c.sleep_download_s > 0:
            opts |= {"sleep_interval": c.sleep_download_s, "max_sleep_interval": 2 * c.sleep_download_s}
        if c.cookiefile:
            opts["cookiefile"] = str(Path(c.cookiefile).expanduser())
        xargs = {k: dict(v) for k, v in c.extractor_args.items()}
        if c.player_clients:
            xargs.setdefault("youtube", {})["player_client"] = list(c.player_clients)
        if c.pot_provider_url:
            xargs.setdefault("youtubepot-bgutilhttp", {})["base_url"] = [c.pot_provider_url]
        if xargs:
            opts["extractor_args"] = xargs
        return opts

    def _policy(self) -> AddressPolicy:
        p = AddressPolicy.from_config(self.cfg)
        if self.cfg.pot_provider_url:   # the configured PO token server is a deliberate local service
            from urllib.parse import urlsplit

            u = urlsplit(self.cfg.pot_provider_url)
            port = u.port or (443 if u.scheme == "https" else 80)
            p = AddressPolicy(p.allow_private, p.allow_hosts | {f"{(u.hostname or '').lower()}:{port}"})
        return p

    def _attempt(self, what: str, fn, item_deadline: float | None = None):
        """Run `fn(net_opts)` with retries for transient failures only; DownloadFailure after the last
        one. Each run gets its own guard proxy (URL policy on every request, deadline = the sooner of
        `download_deadline_s` from now and the item's deadline)."""
        from yt_dlp.utils import YoutubeDLError

        what = redact_url(what)
        attempts = 1 + max(0, self.cfg.retries)
        _scrub_no_proxy(self.log)
        for k in range(attempts):
            RateLimiter.wait(self.cfg.rate_limit_per_min, self.cfg.sleep_s)
            _global_rate_limit(self.cfg.global_limit, self.log)
            now = time.monotonic()
            deadline = now + self.cfg.download_deadline_s if self.cfg.download_deadline_s > 0 else None
            if item_deadline is not None:
                if item_deadline <= now:
                    raise DownloadFailure(Reason.DL_TIMEOUT, f"{what}: the item's deadline "
                                          f"({self.cfg.item_deadline_s:g} s, sources.youtube.item_deadline_s) "
                                          f"passed after {k} attempt(s)", max(k, 1))
                deadline = item_deadline if deadline is None else min(deadline, item_deadline)
            with GuardProxy(self._policy(), deadline, io_timeout=max(1.0, self.cfg.socket_timeout_s)) as guard:
                try:
                    result = fn({"proxy": guard.url})
                    error = None
                except (YoutubeDLError, OSError) as e:
                    error = e
                except Exception as e:  # noqa: BLE001 - a yt-dlp bug on one video must not end the source
                    if not (guard.timed_out or guard.refused):
                        raise DownloadFailure(Reason.DL_UNKNOWN, f"{what}: yt-dlp raised {type(e).__name__}: "
                                              f"{redact_text(str(e))}", k + 1) from None
                    error = e
                # cut by the deadline, even if yt-dlp did not notice (a body without a length
                # ends like a complete one): the result is not trusted
                cut = guard.timed_out
            if cut:
                which = "item" if item_deadline is not None and deadline == item_deadline else "download"
                limit = self.cfg.item_deadline_s if which == "item" else self.cfg.download_deadline_s
                raise DownloadFailure(Reason.DL_TIMEOUT, f"{what}: the {which}'s overall deadline ({limit:g} s, "
                                      f"sources.youtube.{which}_deadline_s) passed; connections cut", k + 1)
            if guard.refused:
                refused = "; ".join(dict.fromkeys(guard.refused))
                if error is not None:
                    raise DownloadFailure(Reason.URL_REFUSED, f"{what}: a request was refused by the URL policy: "
                                                              f"{refused}", k + 1)
                if self.log:   # e.g. a thumbnail or an optional manifest: the download went on without it
                    self.log.warning("%s: refused by the URL policy (download went on): %s", what, refused)
            if error is None:
                return result
            msg = redact_text(_clean_msg(error))
            reason = classify(msg)
            if reason not in TRANSIENT or k == attempts - 1:
                tries = f" after {k + 1} attempts" if k else ""
                hint = f" ({BOT_CHECK_FIX})" if reason is Reason.DL_BOT_CHECK else ""
                raise DownloadFailure(reason, f"{what}: {msg}{tries}{hint}", k + 1) from None
            delay = self.cfg.backoff_s * 2 ** k * random.uniform(0.8, 1.2)
            if self.log:
                self.log.info("%s: %s (%s); retrying in %.1f s", what, reason.value, msg[:120], delay)
            time.sleep(delay)

    # ------------------------------------------------------------ listing

    def _entries(self, info: dict, max_videos: int, depth: int) -> list[tuple[str, str]]:
        vids: list[tuple[str, str]] = []
        for e in info.get("entries") or []:
            if not e or (max_videos and len(vids) >= max_videos):
                continue
            vid = str(e.get("id") or "")
            vurl = e.get("url") or e.get("webpage_url") or ""
            if e.get("ie_key") == "Youtube" and vid and not vurl.startswith("http"):
                vurl = f"https://www.youtube.com/watch?v={vid}"
            # a channel lists its tabs (videos, shorts, live) as nested playlists: expand them
            nested = e.get("_type") == "playlist" or str(e.get("ie_key", "")).endswith("Tab") \
                or "/playlist?" in vurl
            if nested and depth < 2 and vurl:
                try:
                    sub = self.list_videos(vurl, max_videos - len(vids) if max_videos else 0, depth + 1,
                                           remember=False)
                except DownloadFailure as err:
                    if self.log:
                        self.log.warning("%s: %s", redact_url(vurl), err.detail)
                    continue
                vids += sub
            elif vid and vurl:
                vids.append((vid, vurl))
        return vids[:max_videos] if max_videos else vids

    def list_videos(self, url: str, max_videos: int = 0, depth: int = 0,
                    remember: bool = True) -> list[tuple[str, str]]:
        """(video id, video URL) for a video, playlist or channel URL. Single videos are remembered
        in listing.json, so a rerun asks the site nothing for them."""
        key = redact_url(url)   # listing.json is an output: no tokens in it
        with self._listing_lock:
            known = self._listing.get(key)
        if known and known.get("single"):   # the URL is the video: use it as given (the file has it redacted)
            return [(str(known["videos"][0][0]), url)]
        import yt_dlp

        opts = self._base_opts() | {"extract_flat": "in_playlist", "skip_download": True}
        if max_videos:
            opts["playlistend"] = max_videos

        def run(net):
            with yt_dlp.YoutubeDL(opts | net) as ydl:
                return ydl.extract_info(url, download=False)

        info = self._attempt(url, run) or {}
        if info.get("_type") in ("playlist", "multi_video") or "entries" in info:
            vids = self._entries(info, max_videos, depth)
            single = False
        else:
            vids = [(str(info.get("id") or _safe_name(url)), info.get("webpage_url") or url)]
            single = True
            with self._listing_lock:   # fetch() reuses it: one extraction per video, not two
                self._prefetched[vids[0][0]] = info
        if remember:
            with self._listing_lock:
                self._listing[key] = {"single": single, "videos": [[v, redact_url(u)] for v, u in vids]}
                write_json(self._listing_path, self._listing)
        return vids

    # ------------------------------------------------------------ fetching one video

    def _archived(self, video_id: str) -> bool:
        if not self.archive.exists():
            return False
        for line in self.archive.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.strip().split(" ", 1)
            if len(parts) == 2 and parts[1] == video_id:
                return True
        return False

    def _load_done(self, folder: Path, spans: list[tuple[float, float]]) -> Fetched | None:
        done = folder / "done.json"
        if not done.exists():
            return None
        try:
            d = json.loads(done.read_text())
        except (OSError, ValueError):
            return None
        if [list(s) for s in d.get("spans", [])] != [list(s) for s in spans]:
            return None
        parts = [MediaPart(folder / p["file"], p["start"], p["end"]) for p in d["parts"]]
        if not all(p.path.exists() for p in parts):
            return None
        cap = folder / d["captions"] if d.get("captions") else None
        return Fetched(d["video_id"], d["url"], parts, cap if cap and cap.exists() else None,
                       d.get("caption_kind", ""), d.get("info", {}), d.get("downloaded_at", ""), cached=True)

    def fetch(self, video_id: str, url: str, spans: list[tuple[float, float]] = ()) -> Fetched:
        """Download one video (or only its spans) with captions and .info.json, or reuse a finished
        download. DownloadFailure (classified) on failure."""
        import yt_dlp
        from yt_dlp.utils import download_range_func

        spans = sorted((float(a), float(b)) for a, b in spans)
        name = _safe_name(video_id)
        folder = self.root / name
        hit = self._load_done(folder, spans)
        if hit:
            return hit
        # done.json for other spans: the user changed the spans, so fetch again despite the archive
        respan = (folder / "done.json").exists()
        if not respan and self._archived(video_id):
            return Fetched(video_id, url, [], None, "", archived_only=True)
        c = self.cfg
        h = int(c.max_height)
        opts = self._base_opts() | {
            "paths": {"home": str(self.root)},
            "outtmpl": {"default": f"{name}/{name}.%(ext)s", "subtitle": f"{name}/{name}.%(ext)s",
                        "infojson": f"{name}/{name}.%(ext)s"},
            # capped height; '?' keeps formats of unknown height (direct files) eligible
            "format": f"bv*[height<=?{h}]+ba/b[height<=?{h}]/wv*+ba/w",
            "merge_output_format": c.merge_format,
            "writesubtitles": c.prefer_manual_captions, "writeautomaticsub": True,
            "subtitleslangs": list(c.caption_langs), "subtitlesformat": "vtt/srt/best",
            "writeinfojson": True, "download_archive": str(self.archive),
            "noplaylist": True, "playlistend": 1,   # one video per call, whatever the URL turns out to be
            "continuedl": True,
        }
        if respan:
            opts.pop("download_archive")
        if spans:
            opts["outtmpl"]["default"] = f"{name}/{name}.%(section_start)09.3f-%(section_end)09.3f.%(ext)s"
            opts["download_ranges"] = download_range_func(None, spans)
            # re-cut at the exact span start, so caption times shift by exactly span_start
            opts["force_keyframes_at_cuts"] = True

        def run(net):
            # yt-dlp's section downloader checks ffmpeg through a context variable, not the
            # `ffmpeg_location` option (the CLI sets both): set it in this thread too
            from yt_dlp.postprocessor.ffmpeg import FFmpegPostProcessor
            FFmpegPostProcessor._ffmpeg_location.set(self.ffmpeg)
            with yt_dlp.YoutubeDL(opts | net) as ydl:
                if pre is not None:
                    # yt-dlp's own --load-info-json route: formats are selected again with our options
                    return ydl.process_ie_result(ydl.sanitize_info(pre), download=True)
                return ydl.extract_info(url, download=True)

        with self._listing_lock:
            pre = self._prefetched.pop(video_id, None)
        until = time.monotonic() + c.item_deadline_s if c.item_deadline_s > 0 else None
        try:
            info = self._attempt(url, run, until)
        except DownloadFailure as e:
            if pre is None or e.reason in TRANSIENT | {Reason.URL_REFUSED, Reason.DL_TIMEOUT}:
                raise
            pre = None   # the listed info may be stale (expired format URLs): extract afresh once
            info = self._attempt(url, run, until)
        if not info:
            raise DownloadFailure(Reason.DL_UNKNOWN, f"{redact_url(url)}: yt-dlp returned no information")
        return self._finish(folder, video_id, url, spans, info)

    def _finish(self, folder: Path, video_id: str, url: str, spans, info: dict) -> Fetched:
        parts: list[MediaPart] = []
        for rd in info.get("requested_downloads") or []:
            fp = Path(rd.get("filepath") or rd.get("_filename") or "")
            if fp.suffix.lower() in MEDIA_EXTS and fp.exists():
                s = rd.get("section_start")
                parts.append(MediaPart(fp, float(s or 0.0), float(rd["section_end"]) if s is not None else None))
        if not parts:   # fall back to what is on disk
            files = sorted(p for p in folder.glob("*") if p.suffix.lower() in MEDIA_EXTS)
            parts = [MediaPart(p) for p in files[:1]] if not spans else []
        if not parts:
            raise DownloadFailure(Reason.DL_UNKNOWN, f"{redact_url(url)}: yt-dlp finished but left no media file in {folder}")
        cap, kind = None, ""
        req = info.get("requested_subtitles") or {}
        for lang in list(self.cfg.caption_langs) + sorted(req):
            sub = req.get(lang)
            if not sub:
                continue
            fp = Path(sub.get("filepath") or folder / f"{folder.name}.{lang}.{sub.get('ext', 'vtt')}")
            if fp.exists():
                cap = fp
                manual = {s.get("url") for s in (info.get("subtitles") or {}).get(lang, [])}
                kind = "manual" if sub.get("url") in manual else "auto"
                break
        if cap is None:   # section downloads return the info without subtitle paths: look on disk
            for lang in self.cfg.caption_langs:
                found = [folder / f"{folder.name}.{lang}.{ext}" for ext in ("vtt", "srt")]
                found = [f for f in found if f.exists()]
                if found:
                    cap = found[0]
                    kind = "manual" if lang in (info.get("subtitles") or {}) else "auto"
                    break
        meta = {k: info.get(k) or "" for k in ("title", "uploader", "channel", "license", "webpage_url",
                                               "extractor_key", "upload_date")}
        meta["uploader"] = meta["uploader"] or meta.pop("channel", "")
        meta.pop("channel", None)
        meta["webpage_url"] = redact_url(str(meta["webpage_url"]))
        url = redact_url(url)
        _scrub_info_json(folder)
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        write_json(folder / "done.json", {
            "video_id": video_id, "url": url, "spans": [list(s) for s in spans],
            "parts": [{"file": p.path.name, "start": p.span_start, "end": p.span_end} for p in parts],
            "captions": cap.name if cap else "", "caption_kind": kind, "info": meta, "downloaded_at": now,
            "yt_dlp": ytdlp_version()})
        return Fetched(video_id, url, parts, cap, kind, meta, now)


_SECRET_KEYS = {"cookies", "cookie", "authorization", "proxy-authorization", "x-goog-visitor-id", "po_token"}


def _drop_secrets(obj):
    if isinstance(obj, dict):
        return {k: _drop_secrets(v) for k, v in obj.items() if str(k).lower() not in _SECRET_KEYS}
    if isinstance(obj, list):
        return [_drop_secrets(v) for v in obj]
    return obj


def _scrub_info_json(folder: Path) -> None:
    """yt-dlp's .info.json copies hold signed format URLs, the source URL as given (credentials and
    all) and, with a cookies file, the cookies: rewrite each with URLs redacted and cookies dropped."""
    for p in folder.glob("*.info.json"):
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        write_json(p, redact_obj(_drop_secrets(data)))


_no_proxy_warned = False


def _scrub_no_proxy(log) -> None:
    """yt-dlp gives the guard proxy to the ffmpeg it starts (section downloads) as http_proxy, and
    ffmpeg skips a proxy for hosts in no_proxy: such hosts would bypass the URL policy. Remove it."""
    global _no_proxy_warned
    found = [k for k in ("no_proxy", "NO_PROXY") if os.environ.get(k)]
    for k in found:
        os.environ.pop(k, None)
    if found and log and not _no_proxy_warned:
        _no_proxy_warned = True
        log.warning("removed %s from the environment: ffmpeg would reach those hosts around the URL "
                    "policy's guard", "/".join(found))


# ---------------------------------------------------------------- the `youtube` source kind

def _fetch_one(fetcher: "YouTubeFetcher", vid: str, url: str, spans) -> "Fetched | DownloadFailure":
    try:
        return fetcher.fetch(vid, url, spans)
    except DownloadFailure as e:
        return e


def provenance(fetched: Fetched, default_license: str):
    from extract.sources.common import Provenance

    i = fetched.info
    return Provenance(url=redact_url(i.get("webpage_url") or fetched.url), title=i.get("title", ""),
                      uploader=i.get("uploader", ""), license=i.get("license") or default_license,
                      downloaded_at=fetched.downloaded_at,
                      tool_versions=json.dumps({"yt-dlp": ytdlp_version()}, sort_keys=True))


def read_youtube(entry, manifest, ctx, memo) -> tuple[list[dict], list]:
    """Every video of the entry's URLs (playlists and channels expanded), each downloaded once
    (archive + done markers), its captions turned into utterance segments."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    from extract.captions import CaptionError, caption_utterances
    from extract.sources.common import STAGE, RowError, placeholder_row, url_refusal
    from extract.sources.folder import caption_rows
    from pipeline.records import failed, ok, skipped

    cfg = ctx.cfg.sources
    yc = cfg.youtube
    root = ctx.ws.safe_child(ctx.ws.sources, entry.id)
    fetcher = YouTubeFetcher(root, yc, ctx.log, ffmpeg_exe())
    recs, jobs, seen = [], [], set()
    for url in entry.urls:
        shown = redact_url(url)   # what records and logs may say about it
        why = url_refusal(url, yc)
        if why:
            recs.append(failed(STAGE, f"{entry.id}/{shown}", Reason.URL_REFUSED, f"{shown}: {why}"))
            continue
        try:
            vids = fetcher.list_videos(url, entry.max_videos)
        except DownloadFailure as e:
            recs.append(failed(STAGE, f"{entry.id}/{shown}", e.reason, e.detail, attempts=e.attempts))
            continue
        if not vids:
            recs.append(skipped(STAGE, f"{entry.id}/{shown}", Reason.DL_UNAVAILABLE, f"{shown}: lists no videos"))
        for vid, vurl in vids:
            if vid in seen:
                recs.append(skipped(STAGE, f"{entry.id}/{vid}", Reason.DUPLICATE_SOURCE,
                                    f"{redact_url(vurl)}: video {vid} already listed by an earlier URL of this source"))
                continue
            seen.add(vid)
            why = url_refusal(vurl, yc)
            if why:   # a playlist may point anywhere: the policy applies to its entries too
                recs.append(failed(STAGE, f"{entry.id}/{vid}", Reason.URL_REFUSED,
                                   f"{redact_url(vurl)} (from {shown}): {why}"))
                continue
            spans = entry.spans.get(vurl) or entry.spans.get(vid) or (entry.spans.get(url) if len(vids) == 1 else None)
            good = [(s.start, s.end) for s in spans or [] if s.end > s.start]
            if spans and len(good) < len(spans):
                recs.append(skipped(STAGE, f"{entry.id}/{vid}/spans", Reason.BAD_TIME,
                                    f"{redact_url(vurl)}: span(s) {[(s.start, s.end) for s in spans if s.end <= s.start]} "
                                    f"end before they start: ignored"))
                if not good:
                    continue
            jobs.append((vid, vurl, good))
    rows = []
    with ThreadPoolExecutor(max_workers=max(1, yc.concurrency)) as pool:
        futs = [pool.submit(_fetch_one, fetcher, *j) for j in jobs]
        for (vid, vurl, _), fut in tqdm(zip(jobs, futs), total=len(futs), desc=f"youtube {entry.id}",
                                        unit="video", leave=False, disable=len(futs) < 2):
            res = fut.result()
            item = f"{entry.id}/{vid}"
            if isinstance(res, DownloadFailure):
                recs.append(failed(STAGE, item, res.reason, res.detail, attempts=res.attempts))
                continue
            if res.archived_only:
                recs.append(skipped(STAGE, item, Reason.ALREADY_DOWNLOADED,
                                    f"{redact_url(vurl)}: id {vid} is in {fetcher.archive} but its files are gone; delete "
                                    f"that line to download it again"))
                continue
            prov = provenance(res, manifest.license_of(entry))
            if res.captions is None:   # the speech stage transcribes each part (or skips it: transcript captions)
                for part in res.parts:
                    pvid = vid if part.span_end is None else f"{vid}.{part.span_start:.3f}-{part.span_end:.3f}"
                    try:
                        pr = memo.probe(part.path)
                    except RowError as e:
                        recs.append(failed(STAGE, f"{entry.id}/{pvid}", e.reason, f"{redact_url(vurl)}: {e.detail}"))
                        continue
                    rows.append(placeholder_row(duration=pr["duration"], source_id=entry.id, source_kind="youtube",
                                                video_id=pvid, video_path=part.path, video_hash=pr["hash"],
                                                prov=prov))
                    recs.append(ok(STAGE, f"{entry.id}/{pvid}", output=str(part.path), n_segments=0,
                                   caption_kind="", cached=res.cached,
                                   note=f"no manual or automatic captions in {list(yc.caption_langs)}: text from "
                                        f"the speech stage"))
                continue
            try:
                utts, fig = caption_utterances(res.captions, cfg.captions)
            except CaptionError as e:
                recs.append(failed(STAGE, item, Reason.BAD_CAPTIONS, str(e)))
                continue
            for part in res.parts:
                pvid = vid if part.span_end is None else f"{vid}.{part.span_start:.3f}-{part.span_end:.3f}"
                pitem = f"{entry.id}/{pvid}"
                try:
                    pr = memo.probe(part.path)
                except RowError as e:
                    recs.append(failed(STAGE, pitem, e.reason, f"{redact_url(vurl)}: {e.detail}"))
                    continue
                new, outside = caption_rows(utts, duration=pr["duration"], slack=cfg.span_slack_s,
                                            where=f"{res.captions}", offset=part.span_start,
                                            span_end=part.span_end, source_id=entry.id, source_kind="youtube",
                                            text_source="auto-captions" if res.caption_kind == "auto" else "captions",
                                            video_id=pvid, video_path=part.path, video_hash=pr["hash"], prov=prov)
                figs = dict(fig, n_segments=len(new), n_outside_media=outside, caption_kind=res.caption_kind,
                            cached=res.cached)
                if not new:
                    recs.append(skipped(STAGE, pitem, Reason.MEDIA_SPAN if outside else Reason.EMPTY_TEXT,
                                        f"{redact_url(vurl)}: no utterance of {res.captions.name} falls in "
                                        f"{part.path.name} ({pr['duration']:.2f} s)", **figs))
                    continue
                rows += new
                recs.append(ok(STAGE, pitem, output=str(part.path), **figs))
    return rows, recs


__all__ = ["classify", "ytdlp_version", "read_youtube", "provenance",
           "DownloadFailure", "MediaPart", "Fetched", "YouTubeFetcher",
           "RateLimiter", "TRANSIENT"]
