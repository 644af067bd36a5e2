"""Los programas de terminal: el servidor como proceso y el cliente por tubería y por pseudo-terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import queue
import re
import select
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from chatlib import protocol as proto
from chatlib.client import ChatClient
from chatlib.server import SHUTDOWN_NOTICE, ChatServer
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


def test_terminal_client_through_a_pipe(server: ChatServer) -> None:
    host, port = server.address
    other = ChatClient.join(server.address, "ana", 0)
    proc = Proc(
        "-m", "chatlib.client", "--host", host, "--port", str(port), "--name", "beto", "--balance", "3000"
    )
    try:
        proc.expect(proto.WELCOME)
        proc.expect("[SERVER] Client: The balance of 3000 has been set to your account.")
        other.expect("[SERVER] Client: beto connected!")
        other.send("Hola!")
        proc.expect("ana: Hola!")
        proc.write(":funds")
        proc.expect("Me: :funds")
        proc.expect("[SERVER] Client: You have 3000 dollars.")
        proc.write(":t - ana - 10000")
        proc.expect("[SERVER] Client: You don't have sufficient funds for the transaction.")
        proc.write("uwu")
        other.expect("beto: uwu")
        proc.close_stdin()
        proc.expect("You have been disconnected from the best chat in the universe!")
        assert proc.popen.wait(5) == 0
        other.expect("[SERVER] Client: beto disconnected!")
    finally:
        proc.kill()
        other.close()


def test_terminal_client_reports_a_lost_server() -> None:
    srv = ChatServer("127.0.0.1", 0, console=None)
    host, port = srv.start()
    proc = Proc(
        "-m", "chatlib.client", "--host", host, "--port", str(port), "--name", "beto", "--balance", "1"
    )
    try:
        proc.expect("[SERVER] Client: The balance of 1 has been set to your account.")
        srv.stop()
        proc.expect(SHUTDOWN_NOTICE)
        assert proc.popen.wait(5) == 1
        assert proc.popen.stderr is not None
        assert "The connection to the server was lost." in proc.popen.stderr.read()
    finally:
        proc.kill()
        srv.stop()


def test_terminal_client_cannot_connect() -> None:
    with ChatServer("127.0.0.1", 0, console=None) as srv:
        host, port = srv.address
    result = subprocess.run(
        [sys.executable, "-m", "chatlib.client", "--host", host, "--port", str(port)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2
    assert f"Cannot connect to {host}:{port}" in result.stderr


def _read_pty(fd: int, until: bytes, timeout: float = 10) -> bytes:
    """Lee del pseudo-terminal hasta ver ``until``."""
    out = b""
    deadline = time.monotonic() + timeout
    while until not in out:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{until!r} not seen in {out!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            try:
                out += os.read(fd, 4096)
            except OSError:
                break
    return out


def _controlling_tty() -> None:
    """En el hijo: sesión nueva con el pseudo-terminal como terminal de control (Ctrl-C → SIGINT)."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.fixture
def tty_client(server: ChatServer) -> Iterator[tuple[int, subprocess.Popen[bytes], ChatClient]]:
    """El cliente de terminal como "beto" en un pseudo-terminal propio, con "ana" ya en el chat."""
    host, port = server.address
    other = ChatClient.join(server.address, "ana", 0)
    master, slave = pty.openpty()
    popen = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chatlib.client",
            "--host",
            host,
            "--port",
            str(port),
            "--name",
            "beto",
            "--balance",
            "5",
        ],
        cwd=ROOT,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        preexec_fn=_controlling_tty,
        env={**os.environ, "TERM": "xterm"},
    )
    os.close(slave)
    try:
        _read_pty(master, b"The balance of 5 has been set to your account.\r\nMe: ")
        other.expect("[SERVER] Client: beto connected!")
        yield master, popen, other
    finally:
        if popen.poll() is None:
            popen.kill()
        popen.wait(5)
        os.close(master)
        other.close()


def test_terminal_client_leaves_cleanly_on_ctrl_c(
    tty_client: tuple[int, subprocess.Popen[bytes], ChatClient],
) -> None:
    master, popen, other = tty_client
    os.write(master, b"half typed")
    _read_pty(master, b"half typed")
    os.write(master, b"\x03")
    screen = _read_pty(master, b"You have been disconnected from the best chat in the universe!")
    # La despedida empieza en una línea nueva, no pegada a lo que se estaba escribiendo.
    assert screen.startswith(b"\r\nYou have been disconnected")
    assert popen.wait(5) == 0
    other.expect("[SERVER] Client: beto disconnected!")


def test_terminal_client_keeps_the_typed_line_intact_on_a_tty(
    tty_client: tuple[int, subprocess.Popen[bytes], ChatClient],
) -> None:
    master, popen, other = tty_client
    os.write(master, b"typing hal")
    _read_pty(master, b"typing hal")
    other.send("interrupting!")
    screen = _read_pty(master, b"Me: typing hal")
    # La línea en edición se borra, se imprime el mensaje y se redibuja lo escrito.
    assert b"\r\x1b[Kana: interrupting!\nMe: typing hal" in screen.replace(b"\r\n", b"\n")
    os.write(master, b"f done\r")
    other.expect("beto: typing half done")
    # Ctrl-D solo cuando readline ya volvió a leer (el indicador está dibujado).
    _read_pty(master, b"\nMe: ")
    os.write(master, b"\x04")
    _read_pty(master, b"You have been disconnected from the best chat in the universe!")
    assert popen.wait(5) == 0


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
