"""Slowloris connections and ``/healthz`` probes, from a process of their own.

``Slowloris(host, port, count)`` starts a child process that opens ``count``
connections to the proxy, each sending its request head a byte at a time (a byte a
second, for ever), and probes ``GET /healthz`` four times a second on a fresh
connection, timing each answer. ``stop()`` ends it and returns the probes' latencies
(seconds) and how many of its connections the proxy had closed. In its own process,
so that neither the trickling nor the probes take the load client's time (the
``count=0`` child of the reference run costs the client the same).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import socket
import time

HEAD = b"GET /v1/models HTTP/1.1\r\nHost: pacer\r\nX-Slow: "


def _probe(host: str, port: int) -> float:
    """Seconds from connecting to the end of ``/healthz``'s answer."""
    start = time.monotonic()
    with socket.create_connection((host, port), timeout=30) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: pacer\r\nConnection: close\r\n\r\n")
        while conn.recv(65536):
            pass
    return time.monotonic() - start


def _run(host: str, port: int, count: int, pipe: multiprocessing.connection.Connection) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 64), hard))
    conns = []
    for _ in range(count):
        conn = socket.create_connection((host, port), timeout=30)
        conn.sendall(HEAD[:1])
        conn.setblocking(False)
        conns.append(conn)
    pipe.send("ready")
    latencies, sent, closed = [], 1, 0
    next_byte = time.monotonic() + 1.0
    while not pipe.poll(0.25):
        latencies.append(_probe(host, port))
        if time.monotonic() >= next_byte:
            byte = HEAD[sent : sent + 1] or b"x"
            for conn in conns:
                with contextlib.suppress(BlockingIOError):
                    conn.send(byte)
            sent, next_byte = sent + 1, next_byte + 1.0
    for conn in conns:
        try:
            closed += conn.recv(1) == b""
        except BlockingIOError:
            pass  # still open: nothing to read
        except OSError:
            closed += 1
        conn.close()
    pipe.send((latencies, closed))


class Slowloris:
    """The child process (module docstring); started and ready once constructed."""

    def __init__(self, host: str, port: int, count: int) -> None:
        self.count = count
        self.pipe, child = multiprocessing.Pipe()
        self.process = multiprocessing.get_context("fork").Process(
            target=_run, args=(host, port, count, child), daemon=True
        )
        self.process.start()
        if not self.pipe.poll(120) or self.pipe.recv() != "ready":
            raise RuntimeError(f"the slowloris process did not open its {count} connections")

    def stop(self) -> tuple[list[float], int]:
        """The ``/healthz`` latencies (seconds) and how many connections the proxy closed."""
        self.pipe.send("stop")
        latencies, closed = self.pipe.recv()
        self.process.join(30)
        return latencies, closed
