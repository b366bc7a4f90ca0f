"""uvicorn's httptools protocol with one write per loop turn (shared/http_protocol.py): the
writes are joined, nothing is lost or reordered, and HTTP behaves as before (keep-alive,
streamed bodies, ``connection: close``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from shared.http_protocol import OneWriteHttpToolsProtocol, TurnWrites
from tools.localstack import free_port, wait_for_port


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False
        self.closed_after: int | None = None

    def write(self, data: bytes) -> None:
        assert not self.closing, "written after close"
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closed_after = len(self.writes)
        self.closing = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def test_writes_of_one_turn_go_out_as_one() -> None:
    transport = FakeTransport()
    writes = TurnWrites(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    writes.write(b"HTTP/1.1 200 OK\r\n\r\n")
    writes.write(b"{}")
    assert transport.writes == []  # not yet: the turn is not over
    await asyncio.sleep(0)
    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}"]
    writes.write(b"next")
    await asyncio.sleep(0)
    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}", b"next"]
    assert writes.get_extra_info("peername") == "info:peername"  # everything else is the transport's


async def test_close_sends_what_is_pending_first() -> None:
    transport = FakeTransport()
    writes = TurnWrites(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    writes.write(b"a")
    writes.write(b"b")
    writes.close()
    assert transport.writes == [b"ab"] and transport.closed_after == 1
    await asyncio.sleep(0)  # the scheduled flush finds nothing left
    assert transport.writes == [b"ab"]


async def test_writes_to_a_closing_transport_are_dropped() -> None:
    transport = FakeTransport()
    writes = TurnWrites(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    writes.write(b"lost")
    transport.closing = True  # the peer went away before the turn ended
    await asyncio.sleep(0)
    assert transport.writes == []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"first,", "more_body": True})
        await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"second"})
        return
    answer = b'{"echo":"' + body + b'"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@contextlib.asynccontextmanager
async def served() -> AsyncIterator[int]:
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=OneWriteHttpToolsProtocol, log_config=None, lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await asyncio.to_thread(wait_for_port, "127.0.0.1", port)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if line)
    if b"content-length" in headers:
        return head, await reader.readexactly(int(headers[b"content-length"]))
    chunks = b""
    while True:  # chunked
        size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
        data = await reader.readexactly(size + 2)
        if size == 0:
            return head, chunks
        chunks += data[:-2]


async def test_keep_alive_streaming_and_close_through_a_real_server() -> None:
    async with served() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for body in (b"one", b"two"):  # two requests on one keep-alive connection
            writer.write(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\n" + body)
            head, answer = await read_response(reader)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert answer == b'{"echo":"' + body + b'"}'
        writer.write(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        head, answer = await read_response(reader)
        assert b"transfer-encoding: chunked" in head and answer == b"first,second"
        writer.write(b"GET /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        head, answer = await read_response(reader)
        assert b"connection: close" in head and answer == b'{"echo":""}'
        assert await reader.read() == b""  # closed by the server after the answer
        writer.close()
