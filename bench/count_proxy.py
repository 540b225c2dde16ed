#!/usr/bin/env python3
"""A TCP relay on 127.0.0.1 that counts the bytes a client sends upstream.

Usage: python3 bench/count_proxy.py LISTEN_PORT UPSTREAM_PORT COUNT_FILE

Every byte a client sends (request lines, headers and bodies) is forwarded
unchanged to 127.0.0.1:UPSTREAM_PORT and counted; COUNT_FILE holds the
running total (rewritten when a connection closes and on SIGTERM). Answers
are relayed back uncounted. bench/big-layer.sh puts one in front of each
target registry to report the bytes each tool sent.
"""

from __future__ import annotations

import asyncio
import signal
import sys

SENT = 0


def write_count(path: str) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(f"{SENT}\n")


async def pipe(reader, writer, count: bool) -> None:
    global SENT
    try:
        while True:
            data = await reader.read(1 << 20)
            if not data:
                break
            if count:
                SENT += len(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:  # noqa: BLE001 - the peer is gone either way
            pass


async def main() -> None:
    listen, upstream, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    write_count(path)

    async def handle(c_reader, c_writer):
        try:
            u_reader, u_writer = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            c_writer.close()
            return
        await asyncio.gather(pipe(c_reader, u_writer, True), pipe(u_reader, c_writer, False))
        write_count(path)

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    write_count(path)


if __name__ == "__main__":
    asyncio.run(main())
