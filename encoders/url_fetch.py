"""Downloading an image URL safely: every hop's addresses checked by the ImageConfig, the connection
made to the address that was checked (no second DNS lookup to rebind), redirects followed by hand.

Errors say what was refused or that the download failed, never the socket's own message (which would
tell open ports from closed ones and make the indexer a port scanner).
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from urllib.parse import SplitResult, urljoin, urlsplit

from vitrina.encoders.errors import ImageLoadError
from vitrina.encoders.image_policy import IPAddress, ImageConfig

REDIRECTS = (301, 302, 303, 307, 308)
DEFAULT_PORTS = {"http": 80, "https": 443}


def fetch_url(url: str, policy: ImageConfig, timeout_s: float) -> bytes:
    """The body of an http(s) URL, at most policy.max_bytes; raises ImageLoadError."""
    current = url
    for _ in range(policy.max_redirects + 1):
        try:
            status, location, body = _get(current, policy, timeout_s)
        except ImageLoadError as exc:
            if current == url:
                raise
            raise ImageLoadError(f"{exc}, redirected from {url}") from None
        if status in REDIRECTS:
            if not location:
                raise ImageLoadError(f"could not download {url}: a redirect without a Location")
            current = urljoin(current, location)
            continue
        if status != 200:
            raise ImageLoadError(f"could not download {url}: HTTP {status}")
        return body
    raise ImageLoadError(f"could not download {url}: more than {policy.max_redirects} redirects")


def check_url(url: str, policy: ImageConfig) -> None:
    """Refuse (ImageLoadError) a URL that is not http(s) with a host, or whose host resolves to an address
    the policy refuses; what `fetch_url` checks before each hop, without fetching."""
    _checked_target(url, policy)


def _checked_target(url: str, policy: ImageConfig) -> tuple[SplitResult, str, int, list[IPAddress]]:
    """(URL parts, host, port, addresses) of an http(s) URL whose every address the policy allows."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ImageLoadError(f"refused {url}: only http and https URLs with a host are fetched")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise ImageLoadError(f"refused {url}: invalid port") from None
    addresses = _resolve(parts.hostname, port, url)
    for address in addresses:
        policy.check_address(url, parts.hostname, address)
    return parts, parts.hostname, port, addresses


def _get(url: str, policy: ImageConfig, timeout_s: float) -> tuple[int, str | None, bytes]:
    """One GET: (status, Location header, body when 200)."""
    parts, host, port, addresses = _checked_target(url, policy)
    conn = _connection(parts.scheme, host, port, addresses[0], timeout_s)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("GET", target, headers={"User-Agent": "vitrina", "Accept": "image/*"})
        resp = conn.getresponse()
        if resp.status != 200:
            return resp.status, resp.getheader("Location"), b""
        length = resp.getheader("Content-Length")
        if length and length.isdigit() and int(length) > policy.max_bytes:
            raise ImageLoadError(f"{url} is larger than {policy.max_bytes // 2**20} MiB")
        body = resp.read(policy.max_bytes + 1)
    except (OSError, http.client.HTTPException):
        raise ImageLoadError(f"could not download {url}") from None
    finally:
        conn.close()
    if len(body) > policy.max_bytes:
        raise ImageLoadError(f"{url} is larger than {policy.max_bytes // 2**20} MiB")
    return 200, None, body


def _resolve(host: str, port: int, url: str) -> list[IPAddress]:
    """Every address the host resolves to (an IP literal resolves to itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise ImageLoadError(f"could not download {url}: unknown host {host}") from None
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ImageLoadError(f"could not download {url}: unknown host {host}")
    return addresses


def _connection(scheme: str, host: str, port: int, address: IPAddress, timeout_s: float) -> http.client.HTTPConnection:
    """An HTTP(S) connection to `host` that connects to the checked `address` (TLS still verifies `host`)."""
    if scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=timeout_s,
                                                                       context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout_s)

    def pinned(_addr: tuple[str, int], timeout: float | None = None, source_address=None) -> socket.socket:
        return socket.create_connection((str(address), port), timeout, source_address)

    conn._create_connection = pinned  # type: ignore[attr-defined]  # http.client opens its socket through this attribute
    return conn
