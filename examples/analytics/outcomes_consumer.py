#!/usr/bin/env python3
"""An analytics consumer of Ballast's outcome stream.

Reads TurnOutcome records from the `ballast.outcomes` topic (read_committed, so only outcomes of
committed worker rounds), decodes them with the schema file in `schemas/` alone (Avro
single-object encoding: C3 01, the schema's 8-byte CRC-64-AVRO fingerprint, then the datum), and
prints a summary: turns by outcome, latency percentiles, tokens and cost. `--json` prints every
record as one JSON line as well.

    pip install confluent-kafka fastavro
    python3 examples/analytics/outcomes_consumer.py --bootstrap 127.0.0.1:9092

A record written with another schema (a newer Ballast that added a field) is reported by its
fingerprint and skipped: fetch the writer's schema and resolve against it to read it.
"""

import argparse
import io
import json
import os
import sys
import time
import uuid

import fastavro
from confluent_kafka import Consumer, KafkaError, TopicPartition

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCHEMA = os.path.join(HERE, "..", "..", "schemas", "turn_outcome.avsc")
MARKER = b"\xc3\x01"


def load_schema(path):
    with open(path, encoding="utf-8") as f:
        parsed = fastavro.parse_schema(json.load(f))
    # CRC-64-AVRO of the canonical form; the frame carries it little-endian.
    canonical = fastavro.schema.to_parsing_canonical_form(parsed)
    fingerprint = bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))
    return parsed, fingerprint


def decode(value, schema, fingerprint):
    """The record, or raises ValueError saying why it cannot be read with this schema."""
    if value is None or len(value) < 10 or value[:2] != MARKER:
        raise ValueError("not an Avro single-object record")
    if value[2:10] != fingerprint:
        raise ValueError(f"written with schema {value[2:10].hex()}, not {fingerprint.hex()}")
    return fastavro.schemaless_reader(io.BytesIO(value[10:]), schema)


def percentile(sorted_values, q):
    if not sorted_values:
        return 0
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 1))))
    return sorted_values[rank - 1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--bootstrap", default="127.0.0.1:9092")
    p.add_argument("--topic", default="ballast.outcomes")
    p.add_argument("--schema", default=DEFAULT_SCHEMA)
    p.add_argument("--group", default=None, help="consumer group (default: a fresh one)")
    p.add_argument("--idle-seconds", type=float, default=5.0,
                   help="stop after this long without a record (0: follow forever)")
    p.add_argument("--json", action="store_true", help="print every record as a JSON line")
    args = p.parse_args(argv)

    schema, fingerprint = load_schema(args.schema)
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group or f"ballast-analytics-{uuid.uuid4().hex}",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    metadata = consumer.list_topics(args.topic, timeout=10)
    topic = metadata.topics.get(args.topic)
    if topic is None or topic.error is not None:
        print(f"topic {args.topic} not found", file=sys.stderr)
        return 2
    consumer.assign([TopicPartition(args.topic, p, 0) for p in topic.partitions])

    by_outcome, latencies, skipped = {}, [], 0
    tokens = cost = decoded = 0
    last = time.monotonic()
    try:
        while args.idle_seconds == 0 or time.monotonic() - last < args.idle_seconds:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise SystemExit(f"consumer error: {msg.error()}")
            last = time.monotonic()
            try:
                record = decode(msg.value(), schema, fingerprint)
            except ValueError as e:
                skipped += 1
                print(f"skipped {msg.topic()}/{msg.partition()}@{msg.offset()}: {e}", file=sys.stderr)
                continue
            decoded += 1
            by_outcome[record["outcome"]] = by_outcome.get(record["outcome"], 0) + 1
            latencies.append(record["latency_ms"])
            tokens += record["input_tokens"] + record["output_tokens"]
            cost += record["cost_micros"]
            if args.json:
                print(json.dumps(record, sort_keys=True), flush=True)
    finally:
        consumer.close()

    latencies.sort()
    summary = {
        "decoded": decoded,
        "skipped": skipped,
        "by_outcome": dict(sorted(by_outcome.items())),
        "latency_ms": {"p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95)},
        "tokens": tokens,
        "cost_micros": cost,
    }
    print(json.dumps({"summary": summary}, sort_keys=True), flush=True)
    return 0 if skipped == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
