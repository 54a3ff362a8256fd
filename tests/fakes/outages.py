"""Network outages at the edge, as a partition shows them to a client, and a real Redis to stop and start.

    with SilentPort(answers_connect=False) as port:   # packets dropped: a connect never completes
    with SilentPort(answers_connect=True) as port:    # TCP accepted, no reply ever (a hung server)
    server = RedisServer(tmp_path).start(); server.stop(); server.start()   # same port every time
"""

import shutil
import socket
import subprocess
import time
from pathlib import Path


class SilentPort:
    """A local port that never answers. `answers_connect=False`: its listen queue (one slot) is kept
    full, so the kernel drops further SYNs and a client's connect waits until its own timeout, as
    behind a firewall dropping packets. True: connections complete and then hear nothing."""

    def __init__(self, *, answers_connect: bool):
        self.answers_connect = answers_connect
        self._sockets: list[socket.socket] = []
        self.port = 0

    def __enter__(self) -> int:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(128 if self.answers_connect else 0)
        self.port = server.getsockname()[1]
        self._sockets.append(server)
        if not self.answers_connect:
            filler = socket.create_connection(("127.0.0.1", self.port), timeout=2)  # takes the only slot
            self._sockets.append(filler)
        return self.port

    def __exit__(self, *exc) -> None:
        for s in self._sockets:
            s.close()


class RedisServer:
    """A redis-server of the test's own on a fixed free port, without persistence."""

    def __init__(self, log_dir: Path, port: int):
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.log = log_dir / f"redis-{port}.log"
        self.proc = None

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.log.parent)], stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError(f"redis-server did not start on port {self.port}: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
