"""Ingest and transcript settings (extract/ingest.py, extract/sources/, extract/captions.py)."""
from __future__ import annotations

from pipeline.config._base import F, Section


class YouTubeConfig(Section):
    max_height: int = F(480, "cap download height: faces need ~480p, not 4K")
    caption_langs: list[str] = F(["en"], "caption languages, in order of preference")
    prefer_manual_captions: bool = F(True, "manual captions are exact; auto captions are rolling ASR "
                                           "(false: take automatic captions even when manual ones exist)")
    sleep_s: float = F(2.0, "polite sleep between requests to one site (seconds)")
    rate_limit_per_min: int = F(20, "cap on YouTube requests per minute, per process")
    global_limit: str = F("", "Prefect global concurrency limit to take a slot of per request (set by the "
                              "flows: paces all workers and machines together); empty = off")
    concurrency: int = F(2, "videos downloaded at once: more gets rate-limited, not faster")
    retries: int = F(3, "retries for transient errors (network, 429) only")
    backoff_s: float = F(5.0, "first retry delay; doubles each retry, with jitter")
    allow_file_urls: bool = F(False, "file:// URLs read local files: refused unless enabled")
    allow_private_urls: bool = F(False, "private/loopback addresses refused unless enabled (SSRF)")
    allow_hosts: list[str] = F([], "hosts ('host' or 'host:port') allowed although private: an internal media "
                                   "server, a PO token provider, a test's own loopback server; nothing else")
    socket_timeout_s: float = F(30.0, "network timeout per request (an idle connection is cut after this)")
    download_deadline_s: float = F(1800.0, "overall deadline of one yt-dlp run (a listing or one download "
                                           "attempt): a server that drips bytes cannot hold a build")
    item_deadline_s: float = F(3600.0, "overall deadline of one video, all attempts and retries together; "
                                       "past it the video fails with download.timeout")
    js_runtime: str = F("deno", "JavaScript runtime yt-dlp runs YouTube's challenge solver (EJS) with: "
                                "deno, node, bun or quickjs")
    js_runtime_path: str = F("", "its executable; empty = the binary of the installed `deno` PyPI package "
                                 "(for deno), else yt-dlp searches PATH")
    cookiefile: str = F("", "Netscape cookies file of a logged-in browser session (answers YouTube's bot "
                            "check); empty = no cookies")
    player_clients: list[str] = F([], "YouTube player clients to try (e.g. [default, mweb]); empty = yt-dlp's choice")
    pot_provider_url: str = F("", "base URL of a bgutil-ytdlp-pot-provider HTTP server (e.g. "
                                  "http://127.0.0.1:4416); its host:port is allowed by the URL policy")
    extractor_args: dict[str, dict[str, list[str]]] = F({}, "further yt-dlp extractor arguments, "
                                                            "e.g. {youtube: {lang: [en]}}")
    sleep_requests_s: float = F(0.0, "polite sleep between the requests of one extraction "
                                     "(yt-dlp sleep_interval_requests; ~1 for YouTube at volume)")
    sleep_download_s: float = F(0.0, "polite sleep before each video download, randomised up to twice this "
                                     "(yt-dlp sleep_interval / max_sleep_interval)")
    merge_format: str = F("mp4", "container of merged video+audio downloads: ffmpeg and the face stage read it fast")


class CaptionConfig(Section):
    max_gap_s: float = F(1.0, "start a new utterance after a silence longer than this")
    max_duration_s: float = F(10.0, "split utterances longer than this (EmoAva keeps ≤253 frames)")
    min_duration_s: float = F(0.3, "drop utterances shorter than this: too short to carry expression")
    sentence_end: str = F(".!?…", "characters that end a sentence")
    drop_parenthesised: bool = F(True, "subtitles put sound descriptions in parentheses: (laughs), (door closes)")


class MeldConfig(Section):
    max_span_s: float = F(30.0, "reject MELD rows with spans longer than this (real rows have multi-minute errors)")
    clip_dirs: dict[str, list[str]] = F(
        {"train": ["train_splits", "train/train_splits", "MELD.Raw/train_splits"],
         "dev": ["dev_splits_complete", "dev/dev_splits_complete", "MELD.Raw/dev_splits_complete"],
         "test": ["output_repeated_splits_test", "test/output_repeated_splits_test",
                  "MELD.Raw/output_repeated_splits_test"]},
        "clip folders per split, relative to the MELD root, tried in order (official names first)")


class MemorConfig(Section):
    video_pattern: str = F("clips/{clip}.mp4", "clip file for a data.json key when no video field is mapped")
    time_scale: float = F(1.0, "multiply mapped times by this to get seconds (1/fps if they count frames)")


class TableConfig(Section):
    max_span_s: float = F(60.0, "reject table rows longer than this: a typo, not an utterance")


class SourcesConfig(Section):
    youtube: YouTubeConfig = YouTubeConfig()
    captions: CaptionConfig = CaptionConfig()
    meld: MeldConfig = MeldConfig()
    memor: MemorConfig = MemorConfig()
    table: TableConfig = TableConfig()
    memor_fields: dict[str, str] = F({}, "override the MEmoR data.json field mapping (see docs/sources.md)")
    span_slack_s: float = F(0.5, "a span may overrun the media end by this much (caption rounding)")
