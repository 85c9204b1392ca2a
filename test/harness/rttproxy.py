"""A TCP proxy that adds a network round-trip time (RTT) in user space.

This machine's kernel has no netem, so ``make bench`` puts this proxy in front
of the fake provider to make it as far away as a real one.  Standard library
only: it is copied into the instance and runs there (``/opt/fakeprovider``'s
Python or ``python3``).

Timing, as over a real path with one-way delay RTT/2:

* every chunk read from one side at time t is written to the other side at
  t + RTT/2 (a delay queue per direction: order is kept and throughput is
  not serialised -- the reader keeps reading while earlier chunks wait);
* a new connection reaches the server 1.5 RTT after the client connected
  (SYN, SYN-ACK, ACK: the server accepts when the client's ACK arrives), so
  the server's greeting reaches the client 2 RTT after ``connect()`` began,
  and a TLS client's first flight (implicit TLS) reaches the server at 1.5 RTT;
* the TLS handshake, SMTP replies, everything is bytes: each round trip costs
  one RTT;
* EOF (half-close) and close travel with the same delay, after the data
  before them; an upstream that refuses the connection closes the client's.

    python3 rttproxy.py --listen 127.0.0.2:587 --upstream 127.0.0.3:587 --rtt-ms 40
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import sys
import time

CHUNK = 65536
# Per direction: above this many bytes waiting in the delay queue, stop reading
# (TCP's flow control does the rest); keeps memory bounded, never reorders.
HIGH_WATER = 4 * 1024 * 1024
EOF = None


class DelayPipe:
    """One direction: read chunks as they come, write each one ``delay`` seconds after it was read."""

    def __init__(self, reader: asyncio.StreamReader, delay: float, not_before: float = 0.0):
        self.reader = reader
        self.delay = delay
        self.not_before = not_before  # loop time before which nothing is delivered (connection set-up)
        self.queue: collections.deque = collections.deque()
        self.queued_bytes = 0
        self.changed = asyncio.Event()

    async def read_side(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                while self.queued_bytes > HIGH_WATER:
                    self.changed.clear()
                    await self.changed.wait()
                data = await self.reader.read(CHUNK)
                due = max(loop.time() + self.delay, self.not_before)
                self.queue.append((due, data or EOF))
                self.queued_bytes += len(data)
                self.changed.set()
                if not data:
                    return
        except (ConnectionError, OSError):
            self.queue.append((max(loop.time() + self.delay, self.not_before), EOF))
            self.changed.set()

    async def write_side(self, writer: asyncio.StreamWriter) -> None:
        """Deliver in order, each chunk at its due time; EOF becomes a half-close (or a close)."""
        loop = asyncio.get_running_loop()
        while True:
            while not self.queue:
                self.changed.clear()
                await self.changed.wait()
            due, data = self.queue[0]
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self.queue.popleft()
            if data is EOF:
                with contextlib.suppress(OSError, RuntimeError):
                    if writer.can_write_eof():
                        writer.write_eof()
                    await writer.drain()
                return
            self.queued_bytes -= len(data)
            self.changed.set()
            writer.write(data)
            await writer.drain()


class Proxy:
    def __init__(self, upstream: tuple[str, int], rtt: float, log=None):
        self.upstream = upstream
        self.rtt = rtt
        self.log = log
        self.connections = 0

    def _event(self, event: str, **fields) -> None:
        if self.log is not None:
            self.log.write(json.dumps({"ts": round(time.time(), 3), "event": event, **fields}) + "\n")
            self.log.flush()

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        accepted = loop.time()
        self.connections += 1
        half = self.rtt / 2
        # Client -> server: starts reading at once, delivers no earlier than the server's accept (1.5 RTT).
        up = DelayPipe(client_reader, half, not_before=accepted + 1.5 * self.rtt)
        up_reader = asyncio.ensure_future(up.read_side())
        server_writer = None
        try:
            await asyncio.sleep(max(0.0, accepted + 1.5 * self.rtt - loop.time()))
            try:
                server_reader, server_writer = await asyncio.open_connection(*self.upstream)
            except OSError as exc:
                self._event("upstream_refused", error=str(exc))
                await asyncio.sleep(half)  # the RST travels back too
                return
            down = DelayPipe(server_reader, half)
            tasks = [
                up_reader,
                asyncio.ensure_future(up.write_side(server_writer)),
                asyncio.ensure_future(down.read_side()),
                asyncio.ensure_future(down.write_side(client_writer)),
            ]
            # Done when both directions delivered their EOF (or a side broke).
            writers = [tasks[1], tasks[3]]
            try:
                await asyncio.gather(*writers)
            except (ConnectionError, OSError):
                pass
            finally:
                for task in tasks:
                    task.cancel()
        finally:
            up_reader.cancel()
            for writer in (client_writer, server_writer):
                if writer is not None:
                    writer.close()
                    with contextlib.suppress(Exception):
                        await writer.wait_closed()


async def serve(listen: tuple[str, int], upstream: tuple[str, int], rtt: float, ready=None, log=None) -> None:
    proxy = Proxy(upstream, rtt, log)
    server = await asyncio.start_server(proxy.handle, listen[0], listen[1])
    port = server.sockets[0].getsockname()[1]
    proxy._event("listening", listen=listen[0], port=port, upstream=f"{upstream[0]}:{upstream[1]}", rtt_ms=rtt * 1000)
    if ready is not None:
        ready(port, server)
    async with server:
        await server.serve_forever()


def _address(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", required=True, type=_address, help="HOST:PORT to accept on")
    parser.add_argument("--upstream", required=True, type=_address, help="HOST:PORT of the server")
    parser.add_argument("--rtt-ms", type=float, default=40.0, help="round-trip time to add (default 40)")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.listen, args.upstream, args.rtt_ms / 1000, log=sys.stdout))


if __name__ == "__main__":
    main()
