"""El cliente de terminal como lo usa una persona: en un pseudo-terminal, con la pantalla modelada.

``pexpect`` lanza ``python -m chatlib.client`` en un pseudo-terminal propio y
``pyte`` interpreta lo que el programa escribe, como lo haría la terminal:
las pruebas miran la pantalla (filas y cursor), no los bytes. La terminal
modelada responde a las consultas de posición del cursor (CPR) como xterm.
Solo POSIX (los pseudo-terminales lo son); el cliente en sí no depende de POSIX.
El modo de líneas (tuberías) se prueba con ``subprocess``.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from chatlib import protocol as proto
from chatlib.client import ChatClient
from chatlib.server import ChatServer

if sys.platform == "win32":
    pytest.skip("pseudo-terminals (pexpect.spawn) are POSIX-only", allow_module_level=True)

import pexpect
import pyte

ROOT = Path(__file__).resolve().parents[1]
LOST = "The connection to the server was lost."
WAIT = 10.0
PROMPT = "Me: "


def _ignore_sigint() -> None:
    """En el hijo: SIGINT ignorada, como la deja ``nohup`` o ``cmd &``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Terminal:
    """Una terminal de 80x24 con el cliente adentro; guarda también lo que se fue por arriba."""

    def __init__(
        self, *args: str, python: list[str] | None = None, ignore_sigint: bool = False, rows: int = 24
    ) -> None:
        self.screen = pyte.HistoryScreen(80, rows, history=20000)
        self.screen.write_process_input = self._answer_terminal_query
        self.stream = pyte.ByteStream(self.screen)
        self.cond = threading.Condition()
        self.closed = False
        self._top: list[str] = []
        command = python if python is not None else ["-m", "chatlib.client"]
        self.child = pexpect.spawn(
            sys.executable,
            [*command, *args],
            cwd=str(ROOT),
            env={**os.environ, "TERM": "xterm", "PYTHONUNBUFFERED": "1"},
            dimensions=(rows, 80),
            preexec_fn=_ignore_sigint if ignore_sigint else None,
        )
        self.child.delaybeforesend = None  # pexpect espera 50 ms antes de cada envío si no
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _answer_terminal_query(self, reply: str) -> None:
        # pyte contesta la consulta de posición del cursor; la respuesta va al programa.
        self.child.send(reply.encode())

    def _read(self) -> None:
        while True:
            try:
                data = self.child.read_nonblocking(65536, timeout=None)
            except (pexpect.EOF, OSError):
                break
            with self.cond:
                self.stream.feed(data)
                self.cond.notify_all()
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def rows(self) -> list[str]:
        """Todas las filas, las que subieron más las visibles, sin las vacías del final."""
        with self.cond:
            # Lo que subió ya no cambia: se convierte a texto una sola vez.
            top = self.screen.history.top
            width = self.screen.columns
            for line in itertools.islice(top, len(self._top), None):
                self._top.append("".join(line[x].data for x in range(width)).rstrip())
            rows = self._top + [line.rstrip() for line in self.screen.display]
        while rows and not rows[-1]:
            rows.pop()
        return rows

    def cursor_row(self) -> tuple[str, int]:
        """La fila donde está el cursor y su columna."""
        with self.cond:
            return self.screen.display[self.screen.cursor.y].rstrip(), self.screen.cursor.x

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: predicate() or self.closed, timeout)
        if not (ok and predicate()):
            screen = "\n".join(self.rows()[-30:])
            raise AssertionError(f"timed out waiting for {what}; screen:\n{screen}")

    def wait_row(self, row: str, timeout: float = WAIT) -> None:
        self.wait_for(lambda: row in self.rows(), repr(row), timeout)

    def wait_prompt(self, text: str = "") -> None:
        """Espera el indicador ``Me: <text>`` con el cursor al final."""
        expected = f"{PROMPT}{text}"
        self.wait_for(lambda: self.cursor_row() == (expected.rstrip(), len(expected)), f"prompt {expected!r}")

    def send(self, text: str) -> None:
        self.child.send(text.encode())

    def control(self, key: str) -> None:
        self.child.sendcontrol(key)

    def exit_status(self, timeout: float = WAIT) -> int:
        """Espera a que el programa termine; su código de salida."""
        with self.cond:
            self.cond.wait_for(lambda: self.closed, timeout)
        if not self.closed:
            raise AssertionError("the client did not exit; screen:\n" + "\n".join(self.rows()[-30:]))
        self.child.wait()
        status = self.child.exitstatus
        assert status is not None, f"killed by signal {self.child.signalstatus}"
        return int(status)

    def kill(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)
        self.child.close()
        self._pump.join(WAIT)


def handshake(name: str, balance: int) -> list[str]:
    """El saludo tal como queda en pantalla: cada pregunta seguida de la respuesta."""
    return [
        proto.WELCOME,
        proto.ASK_IDENTIFIER,
        name,
        proto.ASK_BALANCE,
        str(balance),
        proto.balance_set_line(balance),
    ]


@pytest.fixture
def spawn(server: ChatServer) -> Iterator[Callable[..., Terminal]]:
    """``spawn("--name", "beto")`` abre el cliente contra el servidor de la prueba."""
    terminals: list[Terminal] = []
    host, port = server.address

    def make(*args: str, **options: object) -> Terminal:
        term = Terminal("--host", host, "--port", str(port), *args, **options)  # type: ignore[arg-type]
        terminals.append(term)
        return term

    yield make
    for term in terminals:
        term.kill()


@pytest.fixture
def ana(server: ChatServer) -> Iterator[ChatClient]:
    client = ChatClient.join(server.address, "ana", 0)
    yield client
    client.close()


def join_beto(spawn: Callable[..., Terminal], ana: ChatClient, balance: int = 5) -> Terminal:
    term = spawn("--name", "beto", "--balance", str(balance))
    term.wait_prompt()
    ana.expect("[SERVER] Client: beto connected!")
    return term


def test_name_and_balance_transcript_is_the_assignments_example(
    spawn: Callable[..., Terminal], server: ChatServer
) -> None:
    term = spawn("--name", "ana", "--balance", "50000")
    term.wait_prompt()
    # El ejemplo del enunciado (requisito 5), con la pregunta del identificador y su respuesta
    # después de la bienvenida; las respuestas se muestran como si se hubieran escrito.
    assert term.rows() == [
        "Welcome to the best chat in the universe!",
        "[SERVER] Client: What is your identifier?",
        "ana",
        "[SERVER] Client: What is your balance?",
        "50000",
        "[SERVER] Client: The balance of 50000 has been set to your account.",
        "Me:",
    ]
    term.send(":q\r")
    term.wait_row(proto.GOODBYE)
    assert term.exit_status() == 0
    assert term.rows()[-2:] == ["Me: :q", proto.GOODBYE]


def test_typed_text_and_cursor_survive_200_incoming_lines(
    spawn: Callable[..., Terminal], ana: ChatClient
) -> None:
    term = join_beto(spawn, ana)
    term.send("hola mundo")
    term.wait_prompt("hola mundo")
    term.send("\x1b[D" * 5)  # cinco veces la flecha izquierda: el cursor queda antes de "mundo"
    term.wait_for(lambda: term.cursor_row() == ("Me: hola mundo", len("Me: hola ")), "cursor moved")
    typed = "ABCDEFGHIJ"
    incoming = [f"ana: line {i}" for i in range(200)]
    for i in range(200):
        ana.send(f"line {i}")
        if i % 20 == 0:
            term.send(typed[i // 20])  # se escribe mientras llegan líneas
    term.wait_row(incoming[-1])
    expected = f"Me: hola {typed}mundo"
    term.wait_for(
        lambda: term.cursor_row() == (expected, len(f"Me: hola {typed}")), "typed text and cursor intact"
    )
    # Cada línea que llegó ocupa su propia fila, entera y en orden, y el indicador sigue abajo.
    assert term.rows() == [*handshake("beto", 5), *incoming, expected]
    term.send("\r")
    assert ana.expect(re.compile("^beto: ")) == f"beto: hola {typed}mundo"
    term.wait_for(lambda: term.rows()[-2:] == [expected, "Me:"], "the sent line above a new prompt")
    assert term.rows() == [*handshake("beto", 5), *incoming, expected, "Me:"]


def test_no_me_line_is_garbled_in_500_round_trips(
    spawn: Callable[..., Terminal], ana: ChatClient, server: ChatServer
) -> None:
    term = join_beto(spawn, ana)
    carol = ChatClient.join(server.address, "carol", 0)
    term.wait_row("[SERVER] Client: carol connected!")
    reply = proto.funds_line(5)
    stop = threading.Event()
    said: list[str] = []

    def chatter() -> None:
        # Otro usuario escribe todo el tiempo: sus líneas llegan mientras se dibuja el indicador.
        while not stop.is_set():
            said.append(f"carol: chatter {len(said)}")
            carol.send(said[-1].removeprefix("carol: "))
            stop.wait(0.01)

    noise = threading.Thread(target=chatter)
    noise.start()
    try:
        for n in range(1, 501):
            if n % 2:
                term.send(":funds\r")
                term.wait_for(lambda n=n: term.rows().count(reply) == (n + 1) // 2, f"reply {n}")
            else:
                term.send(":smile hola\r")
                ana.expect("beto: :~) hola")
    finally:
        stop.set()
        noise.join()
    term.wait_row(said[-1])
    term.wait_prompt()
    carol.close()
    rows = term.rows()
    assert rows[: len(handshake("beto", 5)) + 1] == [
        *handshake("beto", 5),
        "[SERVER] Client: carol connected!",
    ]
    body = rows[len(handshake("beto", 5)) + 1 : -1]
    # Cada fila es una línea entera de alguien; lo propio alterna con su respuesta, en orden.
    mine = [row for row in body if not row.startswith("carol: ")]
    assert mine == ["Me: :funds", reply, "Me: :~) hola"] * 250
    assert [row for row in body if row.startswith("carol: ")] == said
    assert rows[-1] == "Me:"
