"""Server-sent events on the hot path: raw response chunks in, the payloads of `data:` lines out."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["DONE", "EventData", "iter_data", "raw_chunks"]

DONE = b"[DONE]"
_READ_SIZE = 65536


def raw_chunks(raw: Any) -> Iterator[bytes]:
    """Bytes of a urllib3 response as they arrive: whole HTTP chunks, else whatever one read returns."""
    if getattr(raw, "chunked", False) and hasattr(raw, "read_chunked"):
        yield from raw.read_chunked(None, decode_content=True)
        return
    read1 = getattr(raw, "read1", None)
    if read1 is None:  # urllib3 < 2.3: reads block until the size is reached (or the body ends)
        yield from raw.stream(_READ_SIZE, decode_content=True)
        return
    while True:
        data = read1(_READ_SIZE, decode_content=True)
        if not data:
            return
        yield data


class EventData:
    """Feed response bytes as they arrive; get back the data of each event they complete (WHATWG EventSource).

    An event's `data:` lines join with a newline and the result is stripped; an event ends at a blank line;
    other fields and comments are ignored. The client's stream and the local backend's relay both parse with it.
    """

    __slots__ = ("_data", "_pending")

    def __init__(self) -> None:
        self._pending = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        """The data of every event that ``chunk`` completes, in order (often none)."""
        if self._pending:
            chunk = self._pending + chunk
        lines = chunk.split(b"\n")
        self._pending = lines.pop()
        events: list[bytes] = []
        data = self._data
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]
            if not line:
                if data:
                    events.append(b"\n".join(data).strip())
                    data = self._data = []
            elif line[:5] == b"data:":
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line == b"data":
                data.append(b"")
        return events


def iter_data(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The data of each complete event of a stream; an unfinished event at the end of the stream is dropped."""
    parser = EventData()
    for chunk in chunks:
        events = parser.feed(chunk)
        if events:
            yield from events
