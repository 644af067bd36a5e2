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
from tests.helpers import wait_until

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


@pytest.mark.parametrize(
    "args",
    [
        ["--port", "99999"],
        ["--port", "-1"],
        ["--port", "http"],
        ["--log-level", "LOUD"],
        ["--handshake-timeout", "-5"],
        ["--handshake-timeout", "nan"],
        ["--max-clients", "0"],
        ["--max-handshakes-per-ip", "-1"],
        ["--max-line-rate", "-2"],
        ["--switch-interval", "0"],
        ["--switch-interval", "-1"],
    ],
)
def test_server_rejects_bad_option_values_with_a_usage_error(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chatlib.server", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("usage: python -m chatlib.server")
    assert f"argument {args[0]}" in result.stderr
    assert "Traceback" not in result.stderr


SWITCH_PROBE = """
import signal, sys, threading, time
from chatlib import server

def probe():
    deadline = time.monotonic() + 10
    # Espera a que el servidor escuche (sus manejadores de señal ya están puestos).
    while time.monotonic() < deadline and not any(t.name == "chatlib-accept" for t in threading.enumerate()):
        threading.Event().wait(0.01)
    # Una sola escritura, en stderr: el hilo principal imprime en stdout al mismo tiempo.
    sys.stderr.write(f"switch interval {sys.getswitchinterval()}\\n")
    sys.stderr.flush()
    signal.raise_signal(signal.SIGINT)

threading.Thread(target=probe, daemon=True).start()
sys.exit(server.main(ARGS))
"""


@pytest.mark.parametrize(
    ("args", "wanted"),
    [([], 0.02), (["--switch-interval", "0.01"], 0.01)],
)
def test_the_server_process_sets_its_gil_switch_interval(args: list[str], wanted: float) -> None:
    code = SWITCH_PROBE.replace("ARGS", repr(["--port", "0", *args]))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert f"switch interval {wanted}\n" in result.stderr
    assert result.returncode == 0, result.stderr


def test_server_keeps_serving_and_stops_cleanly_when_its_console_pipe_breaks() -> None:
    """Antes: el primer ``connected!`` a una tubería cerrada mataba la sesión (y el cierre)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatlib.server", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        match = re.search(r"Listening on ([\d.]+):(\d+)", proc.stdout.readline())
        assert match is not None
        address = (match.group(1), int(match.group(2)))
        proc.stdout.close()
        clients = [ChatClient.join(address, f"u{i}", i) for i in range(3)]
        clients[0].send(":u")
        clients[0].expect("[SERVER] Client: Connected users: u0, u1, u2.")
        clients[2].quit()
        clients[0].expect("[SERVER] Client: u2 disconnected!")
        proc.send_signal(signal.SIGTERM)
        for client in clients[:2]:
            client.expect(SHUTDOWN_NOTICE)
            client.close()
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_console_lines_are_never_merged_with_thirty_clients() -> None:
    """Antes: los hilos imprimían sin lock y al cerrar salía ``a disconnected![SERVER] Client: b ...``."""
    proc = Proc("-m", "chatlib.server", "--port", "0")
    try:
        match = re.search(r"Listening on ([\d.]+):(\d+)", proc.expect(re.compile("Listening on")))
        assert match is not None
        address = (match.group(1), int(match.group(2)))
        names = [f"user{i:02d}" for i in range(30)]
        clients = [ChatClient.join(address, name, 1) for name in names]
        for name in names:
            proc.expect(f"[SERVER] Client: {name} connected!")
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.popen.wait(5) == 0
        for client in clients:
            client.close()
        rest: list[str] = []

        def every_goodbye_printed() -> bool:
            while not proc.lines.empty():
                rest.append(proc.lines.get())
            # Una línea mezclada contiene dos avisos: se cuentan apariciones, no líneas.
            return sum(line.count("disconnected!") for line in rest) >= len(names)

        wait_until(every_goodbye_printed, what="every disconnection on the console")
        console = [line for line in rest if line != "Shutting down..."]
        assert sorted(console) == sorted(f"[SERVER] Client: {name} disconnected!" for name in names)
    finally:
        proc.kill()
