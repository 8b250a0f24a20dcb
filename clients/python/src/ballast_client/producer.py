"""Producing `TurnRequest`s to Kafka, as Ballast's workers read them.

Each record is the request in Avro single-object encoding (``C3 01``, the 8-byte little-endian
CRC-64-AVRO fingerprint of ``turn_request.avsc``, the Avro body), keyed ``tenant/user_id`` and
partitioned with murmur2 — the partitioner of Ballast and of Java clients, not confluent-kafka's
default — so a user's requests land in the partition their turns' events live in. Needs the
``kafka`` extra: ``pip install "ballast-client[kafka]"``.
"""

from __future__ import annotations

import io
import json
import time
from importlib import resources
from typing import Any, Dict, Optional

from .client import uuid7

_EMPTY = 0xC15D213AA4D7A795


def _rabin_table() -> list:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
        table.append(fp)
    return table


_TABLE = _rabin_table()


def rabin_fingerprint(data: bytes) -> int:
    """CRC-64-AVRO (the Avro specification's Rabin fingerprint) of ``data``."""
    fp = _EMPTY
    for b in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ b) & 0xFF]
    return fp


def request_schema() -> Dict[str, Any]:
    text = resources.files(__package__).joinpath("turn_request.avsc").read_text("utf-8")
    return json.loads(text)


class RequestEncoder:
    """Encodes request dicts as Ballast's request log holds them."""

    def __init__(self) -> None:
        import fastavro
        from fastavro.schema import to_parsing_canonical_form

        schema = request_schema()
        self._fastavro = fastavro
        self._parsed = fastavro.parse_schema(schema)
        canonical = to_parsing_canonical_form(schema).encode("utf-8")
        self.header = b"\xc3\x01" + rabin_fingerprint(canonical).to_bytes(8, "little")

    def encode(self, request: Dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(self.header)
        self._fastavro.schemaless_writer(buf, self._parsed, request)
        return buf.getvalue()


def request(
    tenant: str,
    user_id: str,
    text: str,
    *,
    turn_id: Optional[str] = None,
    channel: str = "kafka",
    attributes: Optional[Dict[str, str]] = None,
    session_id: Optional[str] = None,
) -> Dict[str, Any]:
    """A TurnRequest as a dict, with a fresh UUID v7 turn id unless one is given."""
    return {
        "turn_id": turn_id or uuid7(),
        "tenant": tenant,
        "user_id": user_id,
        "text": text,
        "channel": channel,
        "attributes": dict(attributes or {}),
        "submitted_at_ms": int(time.time() * 1000),
        "session_id": session_id,
    }


class RequestProducer:
    """Writes requests to ``<prefix>.requests`` with an idempotent producer. What a request
    may assert (``roles``, ``scopes``) is bounded by ``[intake]`` on the workers."""

    def __init__(
        self,
        bootstrap: str,
        *,
        topic_prefix: str = "ballast",
        config: Optional[Dict[str, Any]] = None,
    ):
        from confluent_kafka import Producer

        conf = {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            # Ballast and Java clients partition by murmur2 of the key.
            "partitioner": "murmur2_random",
        }
        conf.update(config or {})
        self.topic = f"{topic_prefix}.requests"
        self._producer = Producer(conf)
        self._encoder = RequestEncoder()

    def send(self, req: Dict[str, Any]) -> str:
        """Queues one request; returns its turn id. `flush` makes them durable."""
        key = f"{req['tenant']}/{req['user_id']}".encode("utf-8")
        self._producer.produce(self.topic, key=key, value=self._encoder.encode(req))
        self._producer.poll(0)
        return str(req["turn_id"])

    def flush(self, timeout: float = 30.0) -> None:
        remaining = self._producer.flush(timeout)
        if remaining:
            raise TimeoutError(f"{remaining} request(s) not delivered within {timeout} s")
