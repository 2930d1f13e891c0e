"""Bearer tokens: who is calling, and what they may do.

Two kinds of token are accepted:

* the admin token (ACTIONFLOW_ADMIN_TOKEN, or the one generated on first start);
* signed tokens, `aft1.<claims>.<signature>`: the claims are base64url JSON
  with the user id (`sub`), the role (`user` or `admin`) and, optionally, an
  expiry (`exp`, Unix seconds); the signature is HMAC-SHA256 of the first two
  parts with ACTIONFLOW_TOKEN_SECRET. `actionflow token` issues them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from starlette.requests import Request

from .http import ApiError

ROLES = ("user", "admin")
PREFIX = "aft1"


@dataclass(frozen=True)
class Principal:
    """The caller: a user id and a role, user or admin."""

    user_id: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def issue_token(
    secret: str, user_id: str, role: str = "user", expires_at: int | None = None
) -> str:
    """A signed token for `user_id` with `role`, valid until `expires_at` if given."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if not user_id or len(user_id) > 64:
        raise ValueError("the user id must be 1 to 64 characters")
    claims: dict[str, object] = {"sub": user_id, "role": role, "iat": int(time.time())}
    if expires_at is not None:
        claims["exp"] = expires_at
    body = _encode(json.dumps(claims, separators=(",", ":")).encode())
    signed = f"{PREFIX}.{body}"
    return f"{signed}.{_signature(secret, signed)}"


def authenticate(
    request: Request, admin_token: str, token_secret: str | None = None
) -> Principal:
    """The caller of `request`, or 401 when the token is missing or wrong."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "send a token: Authorization: Bearer <token>")
    if hmac.compare_digest(token.encode(), admin_token.encode()):
        return Principal(user_id="admin", role="admin")
    if token_secret and token.startswith(PREFIX + "."):
        return _verified(token, token_secret)
    raise ApiError(401, "the token is not valid")


def _verified(token: str, secret: str) -> Principal:
    parts = token.split(".")
    if len(parts) != 3:
        raise ApiError(401, "the token is not valid")
    signed = f"{parts[0]}.{parts[1]}"
    if not hmac.compare_digest(parts[2].encode(), _signature(secret, signed).encode()):
        raise ApiError(401, "the token is not valid")
    try:
        claims = json.loads(_decode(parts[1]))
    except (ValueError, UnicodeDecodeError):
        raise ApiError(401, "the token is not valid") from None
    user_id, role = claims.get("sub"), claims.get("role")
    if not isinstance(user_id, str) or not user_id or role not in ROLES:
        raise ApiError(401, "the token is not valid")
    expires = claims.get("exp")
    if isinstance(expires, int) and expires < time.time():
        raise ApiError(401, "the token has expired; ask for a new one")
    return Principal(user_id=user_id, role=role)


def _signature(secret: str, signed: str) -> str:
    digest = hmac.new(secret.encode(), signed.encode(), hashlib.sha256).digest()
    return _encode(digest)


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def require_admin(principal: Principal) -> None:
    """403 unless the caller is an admin."""
    if not principal.is_admin:
        raise ApiError(403, "only an admin may do this")


def caller(request: Request) -> Principal:
    """The caller of `request`, checked against the running server's tokens."""
    runtime = request.app.state.runtime
    return authenticate(request, runtime.admin_token, runtime.token_secret)
