"""Python client for Ballast: submit agent turns, follow them live, answer approvals and
handoffs, read traces and audits.

    from ballast_client import Client

    with Client("http://127.0.0.1:8080", token) as ballast:
        chat = ballast.session("u-7")
        print(chat.ask("Where is my order A1001?").reply)
        print(chat.ask("It arrived broken. Please refund it.").reply)
"""

from .client import Client, Event, Session, Submitted, Turn, uuid7
from .errors import (
    BallastError,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    TooLarge,
    Unauthorized,
    Unavailable,
)

__all__ = [
    "BallastError",
    "Client",
    "Conflict",
    "Event",
    "Forbidden",
    "NotFound",
    "RateLimited",
    "Session",
    "Submitted",
    "TooLarge",
    "Turn",
    "Unauthorized",
    "Unavailable",
    "uuid7",
]
__version__ = "0.1.0"
