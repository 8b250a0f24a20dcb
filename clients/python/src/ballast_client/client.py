"""The HTTP client of a Ballast deployment (`ballast serve`)."""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Union

import httpx

from . import sse
from .errors import BallastError, RateLimited, from_response

#: Submissions retried on a dropped connection or a 429/503 answer, with the same turn id.
RETRIES = 4


def uuid7() -> str:
    """A UUID v7 (time-ordered), the kind of turn id Ballast uses."""
    ms = time.time_ns() // 1_000_000
    rand_a = int.from_bytes(os.urandom(2), "big") & 0x0FFF
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return str(uuid.UUID(int=value))


@dataclass
class Submitted:
    """A turn accepted (202): it runs; `Client.wait` or `Client.events` follow it."""

    turn_id: str
    tenant: str


@dataclass
class Turn:
    """A turn as `GET /v1/turns/{id}` shows it; personal values appear as [REDACTED:kind]."""

    turn_id: str
    tenant: str
    user_id: str
    status: str
    outcome: Optional[str] = None
    reply: Optional[str] = None
    latency_ms: Optional[int] = None
    requested_at_ms: int = 0
    events: int = 0
    steps: Optional[int] = None
    session_id: Optional[str] = None
    record: Optional[Dict[str, Any]] = None

    @property
    def finished(self) -> bool:
        return self.status == "terminal"

    @classmethod
    def from_json(cls, j: Dict[str, Any]) -> "Turn":
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: v for k, v in j.items() if k in names})


@dataclass
class Event:
    """One durable event of a turn, as streamed: `seq`, `kind` and the trace entry."""

    seq: Optional[int]
    kind: str
    data: Dict[str, Any] = field(default_factory=dict)


class Client:
    """A Ballast API client. ``token`` is a bearer token from ``ballast token``.

    >>> with Client("http://127.0.0.1:8080", token) as c:
    ...     turn = c.run("u-7", "Where is my order A1001?")
    ...     print(turn.reply)
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        transport: Optional[httpx.BaseTransport] = None,
    ):
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ── requests ──────────────────────────────────────────────────────────────────────────

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        resp = self._http.request(method, path, **kw)
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = resp.text
            raise from_response(resp.status_code, body)
        return resp

    def submit(
        self,
        user_id: str,
        text: str,
        *,
        session_id: Optional[str] = None,
        attributes: Optional[Dict[str, str]] = None,
        channel: Optional[str] = None,
        turn_id: Optional[str] = None,
        wait_ms: Optional[int] = None,
    ) -> Union[Submitted, Turn]:
        """Starts a turn. The turn id is chosen here (or given), so a retry after a dropped
        connection submits the same turn again and Ballast runs it once. With ``wait_ms`` the
        answer is the finished `Turn` when it ends in time, else `Submitted`."""
        body: Dict[str, Any] = {"user_id": user_id, "text": text, "turn_id": turn_id or uuid7()}
        if session_id is not None:
            body["session_id"] = session_id
        if attributes:
            body["attributes"] = attributes
        if channel is not None:
            body["channel"] = channel
        params = {"wait_ms": wait_ms} if wait_ms is not None else None
        for attempt in range(RETRIES + 1):
            try:
                resp = self._call("POST", "/v1/turns", json=body, params=params)
            except (httpx.TransportError, BallastError) as e:
                retry = isinstance(e, httpx.TransportError) or e.retryable
                if not retry or attempt == RETRIES:
                    raise
                pause = min(2.0, 0.1 * 2**attempt)
                if isinstance(e, RateLimited) and e.retry_after:
                    pause = min(float(e.retry_after), 10.0)
                time.sleep(pause)
                continue
            j = resp.json()
            return Turn.from_json(j) if resp.status_code == 200 else Submitted(**j)
        raise AssertionError("unreachable")

    def turn(self, turn_id: str) -> Turn:
        return Turn.from_json(self._call("GET", f"/v1/turns/{turn_id}").json())

    def wait(self, turn_id: str, *, timeout: float = 60.0, poll: float = 0.1) -> Turn:
        """The turn once it is terminal; `TimeoutError` after ``timeout`` seconds. A turn just
        submitted may not be known for a moment: not found is waited out too."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                t = self.turn(turn_id)
                if t.finished:
                    return t
            except BallastError as e:
                if e.status != 404:
                    raise
            if time.monotonic() >= deadline:
                raise TimeoutError(f"turn {turn_id} not finished after {timeout} s")
            time.sleep(poll)

    def run(self, user_id: str, text: str, *, timeout: float = 60.0, **kw: Any) -> Turn:
        """Submits a turn and returns it finished (``reply`` holds the answer)."""
        wait_ms = int(min(timeout, 60.0) * 1000)
        got = self.submit(user_id, text, wait_ms=wait_ms, **kw)
        if isinstance(got, Turn):
            return got
        return self.wait(got.turn_id, timeout=timeout)

    def events(self, turn_id: str, *, last_event_id: Optional[int] = None) -> Iterator[Event]:
        """The turn's events as they become durable, in order, ending with the ``outcome``
        event (the finished turn). A dropped stream is resumed with ``Last-Event-ID``: no
        event is missed or repeated."""
        last = last_event_id
        while True:
            headers = {"Accept": "text/event-stream"}
            if last is not None:
                headers["Last-Event-ID"] = str(last)
            try:
                with self._http.stream(
                    "GET", f"/v1/turns/{turn_id}/events", headers=headers, timeout=None
                ) as resp:
                    if resp.status_code >= 400:
                        resp.read()
                        try:
                            body = resp.json()
                        except ValueError:
                            body = resp.text
                        raise from_response(resp.status_code, body)
                    for raw in sse.parse(resp.iter_lines()):
                        data = json.loads(raw.data) if raw.data else {}
                        if raw.event == "error":
                            raise from_response(int(data.get("status", 503)), data)
                        seq = int(raw.id) if raw.id not in (None, "") else None
                        if seq is not None:
                            last = seq
                        yield Event(seq=seq, kind=raw.event, data=data)
                        if raw.event == "outcome":
                            return
            except (httpx.TransportError, httpx.StreamError):
                time.sleep(0.2)
                continue
            # The server closed the stream without an outcome (its time limit): resume.

    def session(self, user_id: str, session_id: Optional[str] = None) -> "Session":
        """A conversation: each `Session.ask` is a turn that sees the earlier ones."""
        return Session(self, user_id, session_id or f"s-{uuid7()}")

    def session_turns(self, session_id: str) -> List[Turn]:
        j = self._call("GET", f"/v1/sessions/{session_id}").json()
        turns = j.get("turns", j) if isinstance(j, dict) else j
        return [Turn.from_json(t) for t in turns]

    # ── people: approvals and handoffs ─────────────────────────────────────────────────────

    def queue(self) -> List[Dict[str, Any]]:
        """Turns waiting for a person (approvals and handoffs) of the caller's tenant."""
        return self._call("GET", "/v1/queue").json()

    def approve(self, turn_id: str, reason: Optional[str] = None) -> Dict[str, Any]:
        return self._call("POST", f"/v1/turns/{turn_id}/approve", json={"reason": reason}).json()

    def deny(self, turn_id: str, reason: Optional[str] = None) -> Dict[str, Any]:
        return self._call("POST", f"/v1/turns/{turn_id}/deny", json={"reason": reason}).json()

    def handoffs(self) -> List[Dict[str, Any]]:
        return self._call("GET", "/v1/handoffs").json()

    def accept_handoff(self, turn_id: str) -> Dict[str, Any]:
        return self._call("POST", f"/v1/handoffs/{turn_id}/accept").json()

    def resolve_handoff(self, turn_id: str, resolution: str) -> Dict[str, Any]:
        return self._call(
            "POST", f"/v1/handoffs/{turn_id}/resolve", json={"resolution": resolution}
        ).json()

    # ── auditors ───────────────────────────────────────────────────────────────────────────

    def trace(
        self, turn_id: str, *, reveal: bool = False, reason: Optional[str] = None
    ) -> List[Dict[str, Any]]:
        """The turn's events with OpenTelemetry GenAI attributes. ``reveal`` (auditors;
        operators for turns waiting for them) shows cleartext and is recorded."""
        return self._call("GET", f"/v1/turns/{turn_id}/trace", params=_reveal(reveal, reason)).json()

    def audit(
        self, turn_id: str, *, reveal: bool = False, reason: Optional[str] = None
    ) -> Dict[str, Any]:
        """For each side effect of the turn, the chain of recorded facts that caused it."""
        return self._call("GET", f"/v1/turns/{turn_id}/audit", params=_reveal(reveal, reason)).json()

    def me(self) -> Dict[str, Any]:
        return self._call("GET", "/v1/me").json()


def _reveal(reveal: bool, reason: Optional[str]) -> Optional[Dict[str, str]]:
    if not reveal:
        return None
    return {"reveal": "true", "reason": reason or ""}


class Session:
    """Turns of one conversation: the model sees the earlier ones."""

    def __init__(self, client: Client, user_id: str, session_id: str):
        self.client = client
        self.user_id = user_id
        self.session_id = session_id

    def ask(self, text: str, *, timeout: float = 60.0, **kw: Any) -> Turn:
        return self.client.run(
            self.user_id, text, session_id=self.session_id, timeout=timeout, **kw
        )

    def turns(self) -> List[Turn]:
        return self.client.session_turns(self.session_id)
