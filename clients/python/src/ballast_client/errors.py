"""Errors carrying the server's problem details (RFC 9457)."""

from __future__ import annotations

from typing import Any, Dict, Optional


class BallastError(Exception):
    """A request Ballast refused or could not serve. ``problem`` is the body it sent."""

    def __init__(self, status: int, problem: Dict[str, Any]):
        self.status = status
        self.problem = problem
        self.kind: str = str(problem.get("type", "about:blank"))
        self.title: str = str(problem.get("title", ""))
        self.detail: str = str(problem.get("detail", ""))
        super().__init__(f"{status} {self.title}: {self.detail}".strip())

    @property
    def retryable(self) -> bool:
        return self.status in (408, 429, 502, 503, 504)


class Unauthorized(BallastError):
    """401: no token, or one Ballast does not know."""


class Forbidden(BallastError):
    """403: the token lacks the role, or may not grant a claim the request asserts."""

    @property
    def claim(self) -> Optional[str]:
        value = self.problem.get("claim")
        return str(value) if value is not None else None


class NotFound(BallastError):
    """404: no such turn (or another tenant's)."""


class Conflict(BallastError):
    """409: the turn id exists with other content, or the turn is not waiting for that."""


class TooLarge(BallastError):
    """413: a body or a field over its limit."""


class RateLimited(BallastError):
    """429: the tenant's rate limit; ``retry_after`` seconds."""

    @property
    def retry_after(self) -> Optional[float]:
        value = self.problem.get("retry_after")
        return float(value) if value is not None else None


class Unavailable(BallastError):
    """503: the log or the vault could not be reached; the request can be retried."""


_BY_STATUS = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    429: RateLimited,
    503: Unavailable,
}


def from_response(status: int, body: Any) -> BallastError:
    problem = body if isinstance(body, dict) else {"detail": str(body)[:500]}
    return _BY_STATUS.get(status, BallastError)(status, problem)
