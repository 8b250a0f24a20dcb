"""A Server-Sent Events parser over an iterator of text lines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Optional


@dataclass
class RawEvent:
    event: str
    data: str
    id: Optional[str]


def parse(lines: Iterable[str]) -> Iterator[RawEvent]:
    event, data, ident = "message", [], None
    for line in lines:
        line = line.rstrip("\r\n")
        if line == "":
            if data:
                yield RawEvent(event, "\n".join(data), ident)
            event, data, ident = "message", [], None
            continue
        if line.startswith(":"):
            continue  # a comment: keep-alive
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            ident = value
    if data:
        yield RawEvent(event, "\n".join(data), ident)
