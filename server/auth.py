"""Bearer tokens: who is calling, and what they may do."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from starlette.requests import Request

from .http import ApiError


@dataclass(frozen=True)
class Principal:
    """The caller: a user id and a role, user or admin."""

    user_id: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def authenticate(request: Request, admin_token: str) -> Principal:
    """The caller of `request`, or 401 when the token is missing or wrong."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "send a token: Authorization: Bearer <token>")
    if hmac.compare_digest(token.strip().encode(), admin_token.encode()):
        return Principal(user_id="admin", role="admin")
    raise ApiError(401, "the token is not valid")


def require_admin(principal: Principal) -> None:
    """403 unless the caller is an admin."""
    if not principal.is_admin:
        raise ApiError(403, "only an admin may do this")
