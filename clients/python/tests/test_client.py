"""The client against a real `ballast serve` (the demo domain on a fresh data dir), started by
the Rust test `tests/python_client.rs`: BALLAST_URL and BALLAST_TOKEN say where and as whom."""

import io
import json
import os
import struct

import fastavro
import pytest

from ballast_client import (
    BallastError,
    Client,
    Conflict,
    NotFound,
    Submitted,
    TooLarge,
    Turn,
    Unauthorized,
    uuid7,
)
from ballast_client.producer import RequestEncoder, rabin_fingerprint, request, request_schema

URL = os.environ.get("BALLAST_URL", "")
TOKEN = os.environ.get("BALLAST_TOKEN", "")
# What the deployment's policies ask of a request (the demo's: a customer with support scopes).
ATTRS = json.loads(os.environ.get("BALLAST_ATTRIBUTES", "{}"))
served = pytest.mark.skipif(not URL, reason="needs BALLAST_URL (tests/python_client.rs sets it)")


@pytest.fixture
def ballast():
    with Client(URL, TOKEN) as c:
        yield c


@served
def test_run_returns_the_finished_turn_with_its_reply(ballast):
    turn = ballast.run("u-py-1", "Where is my order A1001?", attributes=ATTRS, timeout=30)
    assert isinstance(turn, Turn) and turn.finished
    assert turn.outcome == "succeeded", turn
    assert turn.reply
    assert turn.user_id.startswith("[REDACTED"), "personal values are masked"


@served
def test_a_retried_submission_runs_once_and_other_content_conflicts(ballast):
    tid = uuid7()
    first = ballast.submit("u-py-2", "Where is my order A1002?", attributes=ATTRS, turn_id=tid)
    again = ballast.submit("u-py-2", "Where is my order A1002?", attributes=ATTRS, turn_id=tid)
    assert isinstance(first, Submitted) and first == again
    with pytest.raises(Conflict) as e:
        ballast.submit("u-py-2", "Something else", attributes=ATTRS, turn_id=tid)
    assert e.value.status == 409 and e.value.problem["turn_id"] == tid
    assert ballast.wait(tid, timeout=30).finished


@served
def test_events_stream_in_order_and_resume_after_the_last_seen(ballast):
    got = ballast.submit("u-py-3", "Where is my order A1003?", attributes=ATTRS)
    events = list(ballast.events(got.turn_id))
    assert events[0].kind == "TurnRequested" and events[0].seq == 0
    seqs = [e.seq for e in events if e.seq is not None]
    assert seqs == list(range(len(seqs))), seqs
    assert events[-2].kind == "TurnCompleted"
    assert events[-1].kind == "outcome" and events[-1].data["status"] == "terminal"
    assert events[-1].data["reply"]
    resumed = list(ballast.events(got.turn_id, last_event_id=3))
    assert [e.seq for e in resumed if e.seq is not None] == seqs[4:]
    assert resumed[-1].kind == "outcome"


@served
def test_a_session_remembers(ballast):
    chat = ballast.session("u-py-4")
    first = chat.ask("Where is my order A1001?", attributes=ATTRS)
    second = chat.ask("Thanks. And order A1002?", attributes=ATTRS)
    assert first.finished and second.finished
    # A session id is personal data like a user id: views show it masked.
    assert second.session_id == "[REDACTED:session]"
    assert [t.turn_id for t in chat.turns()] == [first.turn_id, second.turn_id]


@served
def test_trace_audit_and_people(ballast):
    turn = ballast.run("u-py-5", "Where is my order A1001?", attributes=ATTRS)
    trace = ballast.trace(turn.turn_id)
    assert trace[0]["event"] == "TurnRequested" and trace[-1]["event"] == "TurnCompleted"
    assert isinstance(ballast.audit(turn.turn_id), dict)
    assert isinstance(ballast.queue(), list)
    # Nothing waits for a person on a finished turn: the problem says so.
    with pytest.raises(Conflict):
        ballast.approve(turn.turn_id, "looks fine")


@served
def test_errors_are_exceptions_with_the_problem():
    with Client(URL, "blst_not-a-token") as bad:
        with pytest.raises(Unauthorized) as e:
            bad.turn(uuid7())
        assert e.value.problem["status"] == 401
    with Client(URL, TOKEN) as c:
        with pytest.raises(NotFound):
            c.turn(uuid7())
        with pytest.raises(BallastError) as e:
            c.submit("u-py-6", "x" * 40_000)
        assert e.value.status == 400 and e.value.problem.get("limit") == 32 * 1024
        with pytest.raises(TooLarge):
            c.submit("u-py-6", "x" * 70_000)
        with pytest.raises(BallastError) as e:
            c.submit("u-py-6", "")
        assert e.value.status == 400


def test_requests_encode_as_the_request_log_holds_them():
    enc = RequestEncoder()
    req = request("acme", "u-9", "Where is my order?", turn_id=uuid7(), session_id="s-1")
    data = enc.encode(req)
    assert data[:2] == b"\xc3\x01"
    body = io.BytesIO(data[10:])
    back = fastavro.schemaless_reader(body, fastavro.parse_schema(request_schema()))
    assert back == req
    # The fingerprint of the empty string is the spec's EMPTY constant.
    assert rabin_fingerprint(b"") == 0xC15D213AA4D7A795
    assert struct.unpack("<Q", data[2:10])[0] != 0


def test_uuid7_is_a_version_7_uuid():
    import uuid

    u = uuid.UUID(uuid7())
    assert u.version == 7
