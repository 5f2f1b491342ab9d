"""The URL policy on the wire: every connection yt-dlp (and the ffmpeg it starts) opens goes through a
small forward proxy on 127.0.0.1 that resolves the target once, checks the *addresses* against the
policy and connects to exactly the checked address (no second lookup, so DNS rebinding cannot swap
it). Redirects, media, caption, HLS/DASH manifest and fragment, and thumbnail requests are each a new
request through the proxy, so each is checked. The proxy also enforces the overall deadline of one
download: when it passes, every open connection is cut and new ones are refused, so a server that
drips one byte every few seconds cannot hold a build.

Why a proxy rather than a yt-dlp request handler: yt-dlp follows redirects inside its handlers
(urllib, requests) and hands section downloads to ffmpeg, which opens URLs itself; a proxy is the
one place all of them pass (yt-dlp's `proxy` option, which it also gives ffmpeg as http_proxy).
"""
from __future__ import annotations

import ipaddress
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pipeline.redact import redact_url

_LOCAL_NAMES = ("localhost", "localhost.localdomain")


class Refused(Exception):
    """The policy forbids this host/address (the message says why and which setting allows it)."""


def _blocked(a: ipaddress._BaseAddress) -> bool:
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped:
        a = a.ipv4_mapped
    # not is_global also covers what is_private misses: shared address space (100.64/10, carrier NAT),
    # documentation and benchmarking ranges
    return (not a.is_global or a.is_private or a.is_loopback or a.is_link_local or a.is_reserved
            or a.is_multicast or a.is_unspecified)


@dataclass(frozen=True)
class AddressPolicy:
    """Which hosts may be contacted. `allow_hosts` lists `host` or `host:port` entries allowed even
    though they are private (an internal media server, a test's own loopback server); everything
    else must resolve, and every address it resolves to must be public unless `allow_private`."""

    allow_private: bool = False
    allow_hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_config(cls, yc) -> AddressPolicy:
        return cls(bool(yc.allow_private_urls), frozenset(h.strip().lower() for h in yc.allow_hosts))

    def _listed(self, host: str, port: int) -> bool:
        h = host.lower().strip("[]")
        return h in self.allow_hosts or f"{h}:{port}" in self.allow_hosts \
            or f"[{h}]:{port}" in self.allow_hosts

    def resolve(self, host: str, port: int) -> list[tuple]:
        """getaddrinfo() results (family, type, proto, name, sockaddr) that may be connected to;
        Refused when the name does not resolve or any of its addresses is forbidden."""
        if not host:
            raise Refused("URL has no host")
        listed = self._listed(host, port)
        low = host.lower().strip("[]")
        if not (listed or self.allow_private) and (low in _LOCAL_NAMES or low.endswith(".localhost")):
            raise Refused(f"host {host!r} is this machine; list it in sources.youtube.allow_hosts "
                          "or set sources.youtube.allow_private_urls=true to allow")
        try:
            infos = socket.getaddrinfo(low, port, 0, socket.SOCK_STREAM)
        except (OSError, UnicodeError) as e:
            raise Refused(f"host {host!r} does not resolve ({e})") from None
        if not infos:
            raise Refused(f"host {host!r} does not resolve")
        if listed or self.allow_private:
            return infos
        for info in infos:
            a = ipaddress.ip_address(info[4][0].split("%")[0])
            if _blocked(a):
                raise Refused(f"host {host!r} is a private/loopback address ({a}); list it in "
                              "sources.youtube.allow_hosts or set sources.youtube.allow_private_urls=true "
                              "to allow")
        return infos

    def check_url(self, url: str) -> str:
        """'' if an http(s) URL's host may be contacted, else why not."""
        try:
            u = urlsplit(url.strip())
            port = u.port or (443 if u.scheme.lower() == "https" else 80)
        except ValueError as e:
            return f"not a valid URL ({e})"
        try:
            self.resolve(u.hostname or "", port)
        except Refused as e:
            return str(e)
        return ""


def _split_hostport(target: str) -> tuple[str, int]:
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        return host, int(rest.lstrip(":") or 443)
    host, _, port = target.rpartition(":")
    return (host, int(port)) if host else (target, 443)


_DROP = {b"proxy-connection", b"proxy-authorization", b"connection", b"keep-alive"}


class GuardProxy:
    """A forward HTTP proxy (CONNECT for https, absolute-form requests for http) bound to 127.0.0.1
    on a free port, checking each target with `policy`. `refused` lists what it turned away (URLs
    redacted); `timed_out` says the deadline cut it. Use as a context manager."""

    def __init__(self, policy: AddressPolicy, deadline: float | None = None, io_timeout: float = 30.0):
        self.policy, self.deadline, self.io_timeout = policy, deadline, io_timeout
        self.refused: list[str] = []
        self.targets: list[str] = []          # host:port of every connection made (tests, debugging)
        self.timed_out = False
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._stop = threading.Event()
        self._srv = socket.create_server(("127.0.0.1", 0))
        self._srv.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._srv.getsockname()[1]}"
        self._threads = [threading.Thread(target=self._accept, daemon=True, name="guard-proxy"),
                         threading.Thread(target=self._watch, daemon=True, name="guard-deadline")]
        for t in self._threads:
            t.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._cut_all()
        self._srv.close()

    def left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    # ---------------------------------------------------------------- internals

    def _track(self, s: socket.socket) -> None:
        with self._lock:
            self._socks.add(s)

    def _cut_all(self) -> None:
        with self._lock:
            socks, self._socks = list(self._socks), set()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _watch(self) -> None:
        while not self._stop.is_set():
            left = self.left()
            if left is not None and left <= 0:
                self.timed_out = True
                self._cut_all()
                return
            self._stop.wait(0.1 if left is None else min(0.1, max(left, 0.01)))

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._track(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _reply(self, conn: socket.socket, code: int, why: str) -> None:
        body = why.encode("utf-8", "replace")
        text = {403: "Forbidden", 400: "Bad Request", 502: "Bad Gateway", 504: "Gateway Timeout"}[code]
        try:
            conn.sendall(b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
                         b"X-Wordsmile-Guard: %s\r\nConnection: close\r\n\r\n%s"
                         % (code, text.encode(), len(body), text.encode(), body))
        except OSError:
            pass

    def _serve(self, conn: socket.socket) -> None:
        up = None
        try:
            conn.settimeout(self.io_timeout)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk or len(buf) > 1 << 16:
                    return
                buf += chunk
            head, rest = buf.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            try:
                method, target, version = lines[0].decode("latin-1").split(" ", 2)
            except ValueError:
                return self._reply(conn, 400, "malformed request line")
            if self.timed_out or (self.left() is not None and self.left() <= 0):
                self.timed_out = True
                return self._reply(conn, 504, "wordsmile: the download's deadline has passed")
            if method.upper() == "CONNECT":
                host, port = _split_hostport(target)
                shown = f"https://{target}"
            else:
                u = urlsplit(target)
                if u.scheme.lower() != "http" or not u.hostname:
                    return self._reply(conn, 400, f"only http:// targets are proxied, not {target[:80]!r}")
                host, port = u.hostname, u.port or 80
                shown = redact_url(target)
            try:
                infos = self.policy.resolve(host, port)
            except Refused as e:
                with self._lock:
                    self.refused.append(f"{shown}: {e}")
                return self._reply(conn, 403, f"wordsmile URL policy: {shown}: {e}")
            err = None
            for fam, typ, proto, _, addr in infos:   # connect to a checked address, never re-resolve
                try:
                    up = socket.socket(fam, typ, proto)
                    self._track(up)
                    up.settimeout(self.io_timeout)
                    up.connect(addr)
                    break
                except OSError as e:
                    err, up = e, (up.close() if up else None)
            if up is None:
                return self._reply(conn, 502, f"cannot connect to {host}:{port} ({err})")
            with self._lock:
                self.targets.append(f"{host}:{port}")
            if method.upper() == "CONNECT":
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                path = u.path or "/"
                path += f"?{u.query}" if u.query else ""
                hdrs = [ln for ln in lines[1:] if ln.split(b":", 1)[0].strip().lower() not in _DROP]
                first = f"{method} {path} {version}".encode("latin-1")
                rest = b"\r\n".join([first, *hdrs, b"Connection: close"]) + b"\r\n\r\n" + rest
            if rest:
                up.sendall(rest)
            self._pipe(conn, up)
        except OSError:
            pass
        finally:
            for s in (conn, up):
                if s is not None:
                    with self._lock:
                        self._socks.discard(s)
                    s.close()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        a.setblocking(False)
        b.setblocking(False)
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:   # idle tunnels stay (clients pool them); the deadline and close() end them
            while not self._stop.is_set() and not self.timed_out:
                for key, _ in sel.select(0.2):
                    try:
                        data = key.fileobj.recv(65536)
                    except BlockingIOError:
                        continue
                    if not data:
                        return
                    key.data.settimeout(self.io_timeout)
                    key.data.sendall(data)
                    key.data.setblocking(False)
        finally:
            sel.close()


__all__ = ["AddressPolicy", "GuardProxy", "Refused"]
