"""uvicorn's httptools protocol with one socket write per response instead of two.

uvicorn writes a response's status line and headers (``http.response.start``) and its body
(``http.response.body``) with two ``transport.write()`` calls, which uvloop sends at once:
two ``send`` system calls and two TCP segments per answer, and a client that may wake up
for the headers alone and again for the body. Here, the writes a connection makes during
one turn of the event loop are joined and sent once, at the end of that turn: a small JSON
answer goes out as one segment. Nothing waits on a timer: the bytes leave the process in
the same loop iteration as before, and streamed bodies still go out chunk by chunk (each
turn's writes together).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class TurnWrites:
    """A connection's transport whose writes within one event-loop turn are sent as one.

    Everything but ``write`` and ``close`` is the transport's own (flow control, pausing,
    ``is_closing``...). ``close`` sends what is pending first, as the transport itself
    would flush its buffer before closing."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        pending = self._pending
        if pending is None:
            self._pending = [data]
            self._loop.call_soon(self.flush)
        else:
            pending.append(data)

    def flush(self) -> None:
        pending = self._pending
        if pending is None:
            return
        self._pending = None
        transport = self._transport
        if transport.is_closing():
            return  # the connection went away meanwhile: the transport would drop them too
        transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through :class:`TurnWrites` (pass it as
    uvicorn's ``http``). Parsing, limits, keep-alive, pipelining and shutdown are
    uvicorn's own; every request cycle is created with ``self.transport``, the wrapper."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = TurnWrites(transport, self.loop)  # type: ignore[assignment]
