"""nginx in front of the benchmark's upstream, where it is installed: the reference for
what proxying an event stream costs outside Python.

One worker process, ``proxy_buffering off`` (each upstream read is sent on at once),
gzip per read at level 9 as pacer's proxy compresses (``gzip_types
text/event-stream``; unbuffered proxying flushes the compressor after every read),
access log off; everything it writes lives in a temporary directory.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import httpx

CONFIG = """
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log error;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass {upstream};
            proxy_buffering off;
            gzip on;
            gzip_types text/event-stream;
            gzip_comp_level 9;
        }}
    }}
}}
"""


class Nginx:
    """A running nginx: ``url``, and ``pids`` (the master and its worker) to read CPU and
    memory from."""

    def __init__(self, upstream: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="pacer-bench-nginx-")
        with socket.socket() as s:  # a free port: nginx binds it itself, a moment later
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        path = os.path.join(self.dir, "nginx.conf")
        with open(path, "w") as f:
            f.write(CONFIG.format(dir=self.dir, port=port, upstream=upstream))
        command = ["nginx", "-p", self.dir, "-c", path, "-e", os.path.join(self.dir, "error.log")]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/debug/tasks", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)

    @property
    def pids(self) -> list[int]:
        with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
            return [self.proc.pid, *map(int, f.read().split())]

    def stop(self) -> None:
        self.proc.terminate()  # SIGTERM: nginx's fast shutdown
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def installed() -> bool:
    return shutil.which("nginx") is not None
