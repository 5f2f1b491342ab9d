"""Secrets in URLs never reach an output: `user:pass@` and token-like query values are replaced.

Used wherever a source URL may be written: the segment table's `url` column, records (item ids and
details, hence the state tables and run summaries), logs, the `.info.json` copies and the manifest
copied into a run folder. The real URL is only ever handed to the downloader.
"""
from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "REDACTED"

# query/fragment parameter names whose values are credentials or signed-URL tokens (lower case;
# a name matches when equal to one of these or ending in "_" + one of them, e.g. "x_api_key")
SECRET_PARAMS = {
    "token", "access_token", "refresh_token", "id_token", "auth", "authorization", "auth_token",
    "key", "api_key", "apikey", "secret", "client_secret", "password", "passwd", "pass", "pwd",
    "sig", "signature", "lsig", "sparams", "session", "sessionid", "sid", "jwt", "credential",
    "x-amz-signature", "x-amz-credential", "x-amz-security-token", "x-goog-signature",
    "x-goog-credential", "googleaccessid", "policy", "key-pair-id", "hdnts", "hdnea", "st", "e",
    "expires", "pot", "po_token",
}

_URL_RE = re.compile(r"""(?i)\b[a-z][a-z0-9+.-]*://[^\s"'<>`]+""")
# a bare "user:password@host" (yt-dlp's webpage_url_domain, a netloc in a message)
_USERINFO_RE = re.compile(r"""(?<![\w.+-])[^\s/@:"'<>`=&?]+:[^\s/@"'<>`]+@(?=[\w\[])""")


def _secret(name: str) -> bool:
    n = name.strip().lower()
    ends = tuple(sep + s for s in ("token", "key", "secret", "signature", "sig", "password") for sep in "_-")
    return n in SECRET_PARAMS or n.endswith(ends)


def _redact_query(q: str) -> str:
    if not q:
        return q
    pairs = parse_qsl(q, keep_blank_values=True)
    if not any(_secret(k) for k, _ in pairs):
        return q
    return urlencode([(k, MASK if _secret(k) else v) for k, v in pairs], safe="/:")


def redact_url(url: str) -> str:
    """The URL with its userinfo and secret query/fragment values masked; anything unparsable is
    returned with only the obvious `scheme://user:pass@` part masked."""
    try:
        u = urlsplit(url)
        netloc = u.netloc
        if "@" in netloc:
            netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
        frag = _redact_query(u.fragment) if "=" in u.fragment else u.fragment
        return urlunsplit((u.scheme, netloc, u.path, _redact_query(u.query), frag))
    except ValueError:
        return re.sub(r"(://)[^/@\s]*@", rf"\1{MASK}@", url)


def redact_text(text: str) -> str:
    """Every URL inside free text (a log line, an error message, a manifest) redacted."""
    if "://" in text:
        text = _URL_RE.sub(lambda m: redact_url(m.group(0)), text)
    if "@" in text:
        text = _USERINFO_RE.sub(f"{MASK}@", text)
    return text


def redact_obj(obj):
    """A JSON-like value with every string passed through `redact_text` (info.json copies)."""
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, dict):
        return {k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v) for v in obj]
    return obj


__all__ = ["MASK", "SECRET_PARAMS", "redact_obj", "redact_text", "redact_url"]
