"""uvicorn's httptools protocol with one socket write per response instead of two.

uvicorn writes a response's status line and headers (``http.response.start``) and then its
body (``http.response.body``) with two ``transport.write()`` calls, which uvloop sends at
once: two ``send`` system calls and two TCP segments per answer, and a client that may wake
up for the headers alone and again for the body. Here the status line and headers are held
and written together with the first body bytes, at the moment uvicorn writes those: nothing
is deferred (a small JSON answer goes out as one segment when its body is sent), and a
streamed body still goes out chunk by chunk.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn._types import ASGI3Application, ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


class HeadWithBody:
    """One response's view of the connection's transport: its first write (uvicorn's
    status line and headers) is held and sent with the next one (the body's first bytes);
    ``close`` sends a head still held first. Everything else is the transport's own."""

    __slots__ = ("_head", "_holding", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._holding = True
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._holding:
            self._holding = False
            self._head = data
            return
        head = self._head
        if head is not None:
            self._head = None
            data = head + data
        self._transport.write(data)

    def close(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head)
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _OneWriteCycle(RequestResponseCycle):
    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] == "http.response.start" and not self.response_started:
            self.transport = HeadWithBody(self.transport)  # type: ignore[assignment]
        await super().send(message)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol whose responses write their head with their body (pass
    it as uvicorn's ``http``). Parsing, limits, keep-alive, pipelining and shutdown are
    uvicorn's own: each request cycle uvicorn creates only gets the ``send`` above."""

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        cycle.__class__ = _OneWriteCycle
        super()._start_asgi_task(cycle, app)
