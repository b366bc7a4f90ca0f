"""uvicorn's httptools protocol with one write per response (shared/http_protocol.py): the
head goes out with the body, nothing is lost, deferred or reordered, and HTTP behaves as
before (keep-alive, streamed bodies, ``connection: close``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from shared.http_protocol import HeadWithBody, OneWriteHttpToolsProtocol
from tools.localstack import free_port, wait_for_port


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed_after: int | None = None

    def write(self, data: bytes) -> None:
        assert self.closed_after is None, "written after close"
        self.writes.append(data)

    def close(self) -> None:
        self.closed_after = len(self.writes)

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_the_head_goes_out_with_the_first_body_bytes() -> None:
    transport = FakeTransport()
    response = HeadWithBody(transport)  # type: ignore[arg-type]
    response.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert transport.writes == []  # held until the body comes
    response.write(b"{}")
    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}"]  # at once, not deferred
    response.write(b"more")  # a streamed body's later chunks go out as they come
    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}", b"more"]
    assert response.get_extra_info("peername") == "info:peername"  # everything else is the transport's


def test_close_sends_a_head_still_held() -> None:
    transport = FakeTransport()
    response = HeadWithBody(transport)  # type: ignore[arg-type]
    response.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    response.close()  # e.g. the application failed after starting its answer
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"]
    assert transport.closed_after == 1


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
