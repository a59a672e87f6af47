"""Opaque, tamper-evident page cursors shared by every backend.

A cursor is ``base64url(json payload) . base64url(hmac)``; the MAC covers the payload
and a *scope* string (tenant and query), so a cursor edited by hand, or presented for
another query or by another tenant, is refused with :class:`InvalidSearch`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

from ._errors import InvalidSearch


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    """Signs and verifies cursors with a secret (random per codec unless given)."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret if secret is not None else secrets.token_bytes(32)

    def _mac(self, scope: str, payload: bytes) -> bytes:
        return hmac.new(self._secret, scope.encode() + b"\x00" + payload, hashlib.sha256).digest()

    def encode(self, scope: str, payload: dict[str, Any]) -> str:
        """Return a cursor carrying ``payload``, valid only for ``scope``."""
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return f"{_b64(body)}.{_b64(self._mac(scope, body))}"

    def decode(self, scope: str, cursor: str, *, parameter: str = "cursor") -> dict[str, Any]:
        """Return the payload of a cursor issued for ``scope``.

        Raises:
            InvalidSearch: malformed, tampered with, or issued for another scope.
        """
        try:
            body_text, mac_text = cursor.split(".")
            body, mac = _unb64(body_text), _unb64(mac_text)
        except (ValueError, AttributeError) as exc:
            raise InvalidSearch(
                f"{parameter}: {cursor!r} is not a cursor", parameter=parameter
            ) from exc
        if not hmac.compare_digest(mac, self._mac(scope, body)):
            raise InvalidSearch(
                f"{parameter}: the cursor was altered, or was issued for another query or tenant",
                parameter=parameter,
            )
        payload: dict[str, Any] = json.loads(body)
        return payload
