"""ImageConfig: where product images may be read from (local folders, URL networks) and how many bytes."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

from vitrina.encoders.errors import EncoderError, ImageLoadError
from vitrina.errors import Param

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_IMAGE_BYTES = 30 * 1024 * 1024


class ImagePolicyError(EncoderError):
    """An image policy setting is invalid (a root that is no folder, a network that is no CIDR)."""


@dataclass(frozen=True)
class ImageConfig:
    """Where images may come from.

    roots: folders local images may resolve into (symlinks followed); `for_catalog` adds the catalog's
        folder and sets `confined`. confined False (a query image named by the user on the command line)
        allows any local file.
    allow_private_urls: URLs may reach loopback, link-local, private, multicast, reserved or unspecified
        addresses (off by default: a catalog URL must not turn the indexer into a scanner of the local network).
    allowed_networks: networks URLs may reach even when private (a shop's CDN on 10.0.0.0/8, say).
    max_bytes: the most bytes read of one image, file or download.
    max_redirects: redirect hops followed per URL, each checked like the first.
    """

    roots: tuple[Path, ...] = ()
    confined: bool = False
    allow_private_urls: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()
    max_bytes: int = MAX_IMAGE_BYTES
    max_redirects: int = 5

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_redirects < 0:
            raise ImagePolicyError("max_bytes must be at least 1 and max_redirects at least 0")

    @classmethod
    def from_flags(cls, roots: Sequence[str] = (), networks: Sequence[str] = (), allow_private_urls: bool = False) -> "ImageConfig":
        """A policy from command-line values (--image-root, --allow-url-network, --allow-private-urls)."""
        folders = []
        for root in roots:
            path = Path(root).expanduser()
            if not path.is_dir():
                raise ImagePolicyError("{root}: not a folder", root=Param("image_root", root))
            folders.append(path)
        parsed = []
        for cidr in networks:
            try:
                parsed.append(ipaddress.ip_network(cidr.strip(), strict=False))
            except ValueError:
                raise ImagePolicyError("{param} {cidr!r}: not a network such as 10.0.0.0/8 or fd00::/8",
                                       param=Param("allow_url_network"), cidr=cidr) from None
        return cls(roots=tuple(folders), allow_private_urls=allow_private_urls, allowed_networks=tuple(parsed))

    def for_catalog(self, folder: Path) -> "ImageConfig":
        """This policy confined to the catalog's folder and the extra roots, all resolved."""
        return replace(self, roots=_unique_real((folder, *self.roots)), confined=True)

    def confined_to(self, roots: Iterable[Path]) -> "ImageConfig":
        """This policy confined to exactly `roots` (the folders recorded for an index, at serve time)."""
        return replace(self, roots=_unique_real(roots), confined=True)

    def check_local(self, source: str) -> Path:
        """The real path of a local image, refused (ImageLoadError) when it lies outside the roots."""
        real = Path(os.path.realpath(Path(source).expanduser()))
        if not self.confined:
            return real
        if not any(real == root or real.is_relative_to(root) for root in self.roots):
            raise ImageLoadError(
                f"refused image {source}: it lies outside the catalog's folder and the allowed image roots (--image-root)"
            )
        return real

    def check_address(self, url: str, host: str, address: IPAddress) -> None:
        """Refuse an address a URL resolved to unless it is public, allowed by network, or private URLs are allowed."""
        if self.allow_private_urls or any(address in net for net in self.allowed_networks):
            return
        kind = address_kind(address)
        if kind is not None:
            raise ImageLoadError(f"refused {url}: {host} resolves to a {kind} address (allow with "
                                 "--allow-private-urls or --allow-url-network)")


def address_kind(address: IPAddress) -> str | None:
    """What makes an address non-public ("loopback", "private", ...), or None for a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for kind in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if address.is_global else "non-public"


def _unique_real(paths: Iterable[Path]) -> tuple[Path, ...]:
    out: list[Path] = []
    for path in paths:
        real = Path(os.path.realpath(Path(path).expanduser()))
        if real not in out:
            out.append(real)
    return tuple(out)
