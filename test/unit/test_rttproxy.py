"""The RTT proxy on loopback: the latency ``make bench`` reports is only as true as this delay.

An echo server behind the proxy; every round trip is timed with a real clock.
Lower bounds are exact (nothing may arrive before its due time); upper bounds
leave slack for a loaded 2-core machine.
"""

from __future__ import annotations

import asyncio
import os
import socket
import socketserver
import threading
import time

import pytest
from harness import rttproxy

RTT = 0.1
SLACK = 0.09  # scheduling on a loaded machine; still well under one more RTT


class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        if self.server.greeting:
            sock.sendall(self.server.greeting)
        while True:
            data = sock.recv(65536)
            if not data:  # the client half-closed: say so, then close
                sock.sendall(b"EOF-SEEN")
                return
            sock.sendall(data)


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    greeting = b""


@pytest.fixture(scope="module")
def echo():
    server = _EchoServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _start_proxy(upstream: tuple[str, int], rtt: float) -> int:
    """Run the proxy in a thread with its own event loop; return its port."""
    found: dict = {}
    ready = threading.Event()

    def on_ready(port, _server):
        found["port"] = port
        ready.set()

    def run():
        asyncio.run(rttproxy.serve(("127.0.0.1", 0), upstream, rtt, ready=on_ready))

    threading.Thread(target=run, daemon=True).start()
    assert ready.wait(10), "proxy did not start"
    return found["port"]


@pytest.fixture(scope="module")
def proxy(echo):
    return _start_proxy(echo.server_address, RTT)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _round_trip(sock: socket.socket, payload: bytes) -> float:
    started = time.monotonic()
    sock.sendall(payload)
    assert _recv_exactly(sock, len(payload)) == payload
    return time.monotonic() - started


def test_connection_then_round_trips_cost_rtt(proxy):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", proxy), timeout=10) as sock:
        # First byte: 1.5 RTT until the server accepts (TCP handshake), 0.5 RTT back.
        first = _round_trip(sock, b"hello")
        assert 2 * RTT <= time.monotonic() - started < 2 * RTT + SLACK
        assert first >= 1.5 * RTT  # sent right after connect(): no earlier than a real path allows
        for _ in range(3):
            took = _round_trip(sock, b"ping")
            assert RTT <= took < RTT + SLACK, took


def test_pipelined_chunks_are_not_serialised(proxy):
    """Ten writes 10 ms apart come back in about RTT + 90 ms, not in ten round trips."""
    with socket.create_connection(("127.0.0.1", proxy), timeout=10) as sock:
        _round_trip(sock, b"warm")
        started = time.monotonic()
        for i in range(10):
            sock.sendall(b"%02d" % i)
            time.sleep(0.01)
        assert _recv_exactly(sock, 20) == b"".join(b"%02d" % i for i in range(10))
        took = time.monotonic() - started
        assert RTT + 0.09 <= took < RTT + 0.09 + SLACK + 0.05, took


def test_concurrent_streams_are_not_serialised(proxy):
    socks = [socket.create_connection(("127.0.0.1", proxy), timeout=10) for _ in range(4)]
    try:
        for sock in socks:
            _round_trip(sock, b"warm")
        took: list[float] = []
        threads = [threading.Thread(target=lambda s=sock: took.append(_round_trip(s, b"x" * 1000))) for sock in socks]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        total = time.monotonic() - started
        assert len(took) == 4 and all(t >= RTT for t in took), took
        assert total < RTT + SLACK, total  # four serial round trips would take 4 RTT
    finally:
        for sock in socks:
            sock.close()


def test_bytes_arrive_intact_and_in_order(proxy):
    """3 MB there and back, in order, in about one RTT: a proxy that slept per chunk would take seconds."""
    payload = os.urandom(3 * 1024 * 1024)
    with socket.create_connection(("127.0.0.1", proxy), timeout=30) as sock:
        _round_trip(sock, b"warm")
        started = time.monotonic()
        received: list[bytes] = []

        def reader():
            received.append(_recv_exactly(sock, len(payload)))

        thread = threading.Thread(target=reader)
        thread.start()
        for i in range(0, len(payload), 4096):
            sock.sendall(payload[i : i + 4096])
        thread.join(30)
        took = time.monotonic() - started
        assert received and received[0] == payload
        assert RTT <= took < RTT + 1.0, took  # 48 chunks of 64 KiB each way, not 48 delays


def test_half_close_travels_with_the_delay(proxy):
    with socket.create_connection(("127.0.0.1", proxy), timeout=10) as sock:
        _round_trip(sock, b"warm")
        sock.sendall(b"last words")
        started = time.monotonic()
        sock.shutdown(socket.SHUT_WR)  # the server still answers after our EOF
        data = b""
        while chunk := sock.recv(100):
            data += chunk
        took = time.monotonic() - started
        assert data == b"last wordsEOF-SEEN"
        assert RTT <= took < RTT + SLACK, took  # and then the server's close arrived: recv() returned b""


def test_server_greeting_and_close_reach_the_client(echo):
    """A server that speaks first (SMTP's banner) and an upstream that is gone."""
    greeter = _EchoServer(("127.0.0.1", 0), _Echo)
    greeter.greeting = b"220 ready\r\n"
    threading.Thread(target=greeter.serve_forever, daemon=True).start()
    try:
        port = _start_proxy(greeter.server_address, RTT)
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            assert _recv_exactly(sock, 11) == b"220 ready\r\n"
            assert 2 * RTT <= time.monotonic() - started < 2 * RTT + SLACK
    finally:
        greeter.shutdown()
        greeter.server_close()
    with socket.socket() as spare:  # a port nobody listens on
        spare.bind(("127.0.0.1", 0))
        dead = spare.getsockname()
    port = _start_proxy(dead, RTT)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        started = time.monotonic()
        assert sock.recv(10) == b""  # closed, not hanging: fail closed
        assert time.monotonic() - started < 2 * RTT + SLACK
