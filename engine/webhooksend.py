"""Posting one outbox webhook: destination rules, signature, the HTTP call.

Destination rules, checked when the step runs and again before each attempt:
the scheme is http or https; the host is on the allow-list; every address the
host resolves to is public, unless private addresses are allowed. The call
then goes to the address that was checked (with the host name kept for the
Host header and TLS), so a second DNS answer cannot redirect it elsewhere.

Signature header (documented in the README for receivers):

    Actionflow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx

from .notifyconfig import WebhookSettings
from .outbox import DeliveryError

SIGNATURE_HEADER = "Actionflow-Signature"
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def sign(secret: str, timestamp: int, body: str) -> str:
    """The value of the Actionflow-Signature header for `body` sent at `timestamp`."""
    signed = f"{timestamp}.{body}".encode()
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def check_destination(url: str, settings: WebhookSettings) -> str:
    """The host of `url` if the allow-list permits it; DeliveryError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeliveryError(
            f"webhook URL {url!r} refused: it must be an http:// or https:// URL "
            "with a host",
            permanent=True,
        )
    host = parts.hostname.lower()
    if not _allowed(host, settings.allow_hosts):
        raise DeliveryError(
            f"webhook host {host!r} refused: it is not in "
            "outbound_webhooks.allow_hosts; add it there to allow posting to it",
            permanent=True,
        )
    literal = _literal_address(host)
    if literal is not None:
        _check_address(host, literal, settings)
    return host


def resolve_checked(host: str, port: int, settings: WebhookSettings) -> str:
    """An address of `host` to connect to, after checking every address it has."""
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise DeliveryError(f"webhook host {host!r} does not resolve: {exc}") from None
    addresses = sorted({str(answer[4][0]) for answer in answers})
    if not addresses:
        raise DeliveryError(f"webhook host {host!r} has no address")
    for address in addresses:
        _check_address(host, ipaddress.ip_address(address.split("%")[0]), settings)
    return addresses[0]


class WebhookTransport:
    """Delivers outbox rows of kind `webhook`: checked, signed, posted."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings

    def __call__(self, row: dict[str, Any]) -> None:
        """Post the row's body; DeliveryError unless the receiver answers 2xx."""
        if not self.settings.secret:
            raise DeliveryError("no webhook signing secret is configured")
        call = json.loads(row["payload"])
        url, body = call["url"], call["body"]
        host = check_destination(url, self.settings)
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = resolve_checked(host, port, self.settings)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "actionflow",
            "Idempotency-Key": row["key"],
            SIGNATURE_HEADER: sign(self.settings.secret, int(time.time()), body),
            "Host": parts.netloc.rpartition("@")[2],
        }
        self._post(url, _pinned(parts, address, port), host, headers, body)

    def _post(
        self, url: str, target: str, host: str, headers: dict[str, str], body: str
    ) -> None:
        timeout = self.settings.timeout_seconds
        extensions = {"sni_hostname": host} if target.startswith("https") else {}
        try:
            with httpx.Client(
                timeout=timeout, trust_env=False, follow_redirects=False
            ) as client:
                response = client.post(
                    target,
                    content=body.encode(),
                    headers=headers,
                    extensions=extensions,
                )
        except httpx.TimeoutException:
            raise DeliveryError(f"webhook {url} timed out after {timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise DeliveryError(
                f"cannot reach webhook {url}: {type(exc).__name__}: {exc}"
            ) from None
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"webhook {url} answered {response.status_code}")


def _allowed(host: str, allow_hosts: tuple[str, ...]) -> bool:
    for allowed in allow_hosts:
        allowed = allowed.lower()
        if allowed.startswith("*."):
            if host.endswith(allowed[1:]) and host != allowed[2:]:
                return True
        elif host == allowed:
            return True
    return False


def _literal_address(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _check_address(host: str, address: IpAddress, settings: WebhookSettings) -> None:
    if settings.allow_private:
        return
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    kind = _private_kind(address)
    if kind is None:
        return
    raise DeliveryError(
        f"webhook host {host!r} refused: it resolves to {address}, a {kind} "
        "address; set outbound_webhooks.allow_private: true to allow private, "
        "loopback and link-local addresses",
        permanent=True,
    )


def _private_kind(address: IpAddress) -> str | None:
    if address.is_unspecified:  # 0.0.0.0 and :: reach this machine
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_private:
        return "private"
    if not address.is_global or address.is_multicast:
        return "non-public"
    return None


def _pinned(parts: SplitResult, address: str, port: int) -> str:
    literal = f"[{address}]" if ":" in address else address
    return urlunsplit(
        (parts.scheme, f"{literal}:{port}", parts.path or "/", parts.query, "")
    )
