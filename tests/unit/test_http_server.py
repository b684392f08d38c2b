"""Every Alur HTTP server (the services' embedded apps and the simulators) keeps an idle
connection open for longer than a client keeps it, so a client reusing one is answered."""

import asyncio

import httpx
import pytest
import uvicorn

from alur.runtime.http import server_config


async def hello(scope, receive, send) -> None:  # noqa: ANN001 - a bare ASGI app
    await receive()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    await asyncio.wait_for(reader.readexactly(2), 5)
    return head.split(b"\r\n", 1)[0]


async def test_an_idle_connection_outlives_the_clients_keep_alive() -> None:
    server = uvicorn.Server(server_config(hello, "127.0.0.1", 0, "warning", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await ask(reader, writer) == b"HTTP/1.1 200 OK"

        # Idle for a second longer than httpx keeps a pooled connection: the server has not
        # hung up (a read that returns b"" would be its FIN) and answers on the same socket.
        idle = httpx.Limits().keepalive_expiry + 1
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), idle)
        assert await ask(reader, writer) == b"HTTP/1.1 200 OK"
        writer.close()
        await writer.wait_closed()
    finally:
        server.should_exit = True
        await serving
