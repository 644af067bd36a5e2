"""El servidor como proceso: su consola y su salida limpia (el cliente: test_client_terminal.py)."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from chatlib.client import ChatClient
from chatlib.server import SHUTDOWN_NOTICE

ROOT = Path(__file__).resolve().parents[1]


class Proc:
    """Un proceso hijo cuya salida estándar se lee línea a línea desde un hilo."""

    def __init__(self, *args: str) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-u", *args],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, pattern: str | re.Pattern[str], timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matched {pattern!r}; seen {self.seen!r}") from None
            self.seen.append(line)
            if (line == pattern) if isinstance(pattern, str) else pattern.search(line):
                return line

    def write(self, text: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(text + "\n")
        self.popen.stdin.flush()

    def close_stdin(self) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.close()

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)


@pytest.fixture
def server_process() -> Iterator[tuple[Proc, tuple[str, int]]]:
    proc = Proc("-m", "chatlib.server", "--port", "0")
    match = re.search(r"Listening on ([\d.]+):(\d+)", proc.expect(re.compile("Listening on")))
    assert match is not None
    yield proc, (match.group(1), int(match.group(2)))
    proc.kill()


def test_server_process_prints_connections_and_exits_cleanly_on_sigterm(
    server_process: tuple[Proc, tuple[str, int]],
) -> None:
    proc, address = server_process
    ana = ChatClient.join(address, "ana", 10)
    proc.expect("[SERVER] Client: ana connected!")
    ana.quit()
    proc.expect("[SERVER] Client: ana disconnected!")
    beto = ChatClient.join(address, "beto", 10)
    proc.expect("[SERVER] Client: beto connected!")
    proc.popen.send_signal(signal.SIGTERM)
    beto.expect(SHUTDOWN_NOTICE)
    assert beto.wait_closed(5)
    assert proc.popen.wait(5) == 0
    beto.close()


def test_server_process_exits_cleanly_on_ctrl_c(server_process: tuple[Proc, tuple[str, int]]) -> None:
    proc, address = server_process
    ana = ChatClient.join(address, "ana", 10)
    proc.popen.send_signal(signal.SIGINT)
    ana.expect(SHUTDOWN_NOTICE)
    assert proc.popen.wait(5) == 0
    ana.close()
