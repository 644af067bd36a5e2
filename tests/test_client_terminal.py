"""El cliente de terminal como lo usa una persona: en un pseudo-terminal, con la pantalla modelada.

``pexpect`` lanza ``python -m chatlib.client`` en un pseudo-terminal propio y
``pyte`` interpreta lo que el programa escribe, como lo haría la terminal:
las pruebas miran la pantalla (filas y cursor), no los bytes. La terminal
modelada responde a las consultas de posición del cursor (CPR) como xterm.
El modo de líneas se prueba con tuberías (``pexpect.popen_spawn``). Solo POSIX:
los pseudo-terminales lo son; el cliente en sí no depende de POSIX.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from chatlib import protocol as proto
from chatlib.client import ChatClient, own_line
from chatlib.server import SHUTDOWN_NOTICE, ChatServer

if sys.platform == "win32":
    pytest.skip("pseudo-terminals (pexpect.spawn) are POSIX-only", allow_module_level=True)

import pexpect
import pexpect.popen_spawn
import pyte

ROOT = Path(__file__).resolve().parents[1]
LOST = "The connection to the server was lost."
WAIT = 10.0
PROMPT = "Me: "


def _ignore_sigint() -> None:
    """En el hijo: SIGINT ignorada, como la deja ``nohup`` o ``cmd &``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Terminal:
    """Una terminal de 24 filas con el cliente adentro; guarda también lo que se fue por arriba."""

    def __init__(
        self,
        *args: str,
        python: list[str] | None = None,
        ignore_sigint: bool = False,
        columns: int = 80,
        term: str = "xterm",
    ) -> None:
        self.screen = pyte.HistoryScreen(columns, 24, history=20000)
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
            env={**os.environ, "TERM": term, "PYTHONUNBUFFERED": "1"},
            dimensions=(24, columns),
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

    def wait_screen(self, check: Callable[[list[str]], bool], what: str) -> list[str]:
        """Espera a que las filas cumplan ``check``; las retorna tal como estaban en ese momento.

        Mirar dos veces no sirve: entre una y otra el programa puede estar redibujando el indicador.
        """
        seen: list[str] = []

        def holds() -> bool:
            seen[:] = self.rows()
            return check(seen)

        self.wait_for(holds, what)
        return seen

    def wait_rows(self, expected: list[str]) -> None:
        """Espera a que la pantalla entera sea ``expected``, fila por fila."""
        self.wait_screen(lambda rows: rows == expected, f"exactly these rows: {expected!r}")

    def wait_row(self, row: str, timeout: float = WAIT) -> None:
        self.wait_for(lambda: row in self.rows(), repr(row), timeout)

    def wait_prompt(self, text: str = "") -> None:
        """Espera el indicador ``Me: <text>`` con el cursor al final."""
        expected = f"{PROMPT}{text}"
        self.wait_for(lambda: self.cursor_row() == (expected.rstrip(), len(expected)), f"prompt {expected!r}")

    def send(self, text: str) -> None:
        self.child.send(text.encode())

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

    def make(*args: str, **options: Any) -> Terminal:
        term = Terminal("--host", host, "--port", str(port), *args, **options)
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
    term.wait_rows(
        [
            "Welcome to the best chat in the universe!",
            "[SERVER] Client: What is your identifier?",
            "ana",
            "[SERVER] Client: What is your balance?",
            "50000",
            "[SERVER] Client: The balance of 50000 has been set to your account.",
            "Me:",
        ]
    )
    term.send(":q\r")
    term.wait_row(proto.GOODBYE)
    assert term.exit_status() == 0
    assert term.rows() == [*handshake("ana", 50000), "Me: :q", proto.GOODBYE]


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
    term.wait_rows([*handshake("beto", 5), *incoming, expected])
    term.send("\r")
    assert ana.expect(re.compile("^beto: ")) == f"beto: hola {typed}mundo"
    term.wait_rows([*handshake("beto", 5), *incoming, expected, "Me:"])


def test_a_typed_line_that_wraps_survives_incoming_lines(
    spawn: Callable[..., Terminal], ana: ChatClient
) -> None:
    term = join_beto(spawn, ana)
    text = "0123456789" * 10  # con el indicador son 104 columnas: dos filas de 80
    term.send(text + "\x1b[D" * 30)
    wrapped = [f"Me: {text}"[:80], f"Me: {text}"[80:]]
    term.wait_for(lambda: term.rows()[-2:] == wrapped and term.cursor_row() == (wrapped[0], 74), "wrapped")
    incoming = [f"ana: line {i}" for i in range(50)]
    for line in incoming:
        ana.send(line.removeprefix("ana: "))
    term.wait_row(incoming[-1])
    term.wait_for(lambda: term.rows()[-2:] == wrapped and term.cursor_row() == (wrapped[0], 74), "intact")
    term.wait_rows([*handshake("beto", 5), *incoming, *wrapped])
    term.send("Z\r")
    sent = text[:70] + "Z" + text[70:]
    assert ana.expect(re.compile("^beto: ")) == f"beto: {sent}"
    shown = [f"Me: {sent}"[:80], f"Me: {sent}"[80:]]
    term.wait_rows([*handshake("beto", 5), *incoming, *shown, "Me:"])


def test_no_me_line_is_garbled_in_500_round_trips(
    spawn: Callable[..., Terminal], ana: ChatClient, connect: Callable[..., ChatClient]
) -> None:
    term = join_beto(spawn, ana)
    carol = connect("carol", 0)
    term.wait_row("[SERVER] Client: carol connected!")
    reply = proto.funds_line(5)
    stop = threading.Event()
    said: list[str] = []

    def chatter() -> None:
        # Otro usuario escribe cada 10 ms: sus líneas llegan mientras se dibuja el indicador.
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
    start = [*handshake("beto", 5), "[SERVER] Client: carol connected!"]
    mine = ["Me: :funds", reply, "Me: :~) hola"] * 250

    def everything_shown(rows: list[str]) -> bool:
        return rows[-1:] == ["Me:"] and len(rows) == len(start) + len(mine) + len(said) + 1

    rows = term.wait_screen(everything_shown, "every line of the 500 round trips")
    assert rows[: len(start)] == start
    body = rows[len(start) : -1]
    # Cada fila es una línea entera de alguien; lo propio alterna con su respuesta, en orden.
    assert [row for row in body if not row.startswith("carol: ")] == mine
    assert [row for row in body if row.startswith("carol: ")] == said


def test_own_emoji_lines_read_as_the_others_see_them(spawn: Callable[..., Terminal], ana: ChatClient) -> None:
    term = join_beto(spawn, ana)
    term.send(":smile\r")
    assert ana.expect(re.compile("^beto: ")) == "beto: :~)"
    term.send(":angry hola :confused\r")
    assert ana.expect(re.compile("^beto: ")) == "beto: >:( hola :S"
    term.wait_for(lambda: term.rows()[-3:] == ["Me: :~)", "Me: >:( hola :S", "Me:"], "own emoji lines")


KEYS = {"ctrl-c": "\x03", "ctrl-d": "\x04", ":q": ":q\r"}


@pytest.mark.parametrize("key", KEYS)
def test_leaving_while_the_identifier_is_asked(spawn: Callable[..., Terminal], key: str) -> None:
    term = spawn()
    term.wait_row(proto.ASK_IDENTIFIER)
    term.wait_for(lambda: term.cursor_row() == ("", 0), "the answer prompt")
    term.send(KEYS[key])
    assert term.exit_status() == 0
    assert term.rows() == [proto.WELCOME, proto.ASK_IDENTIFIER]


@pytest.mark.parametrize("key", KEYS)
def test_leaving_while_the_balance_is_asked(spawn: Callable[..., Terminal], key: str) -> None:
    term = spawn("--name", "beto")
    term.wait_row(proto.ASK_BALANCE)
    term.wait_for(lambda: term.cursor_row() == ("", 0), "the answer prompt")
    term.send(KEYS[key])
    assert term.exit_status() == 0
    assert term.rows() == [proto.WELCOME, proto.ASK_IDENTIFIER, "beto", proto.ASK_BALANCE]


@pytest.mark.parametrize("key", KEYS)
def test_leaving_from_the_chat_says_goodbye(
    spawn: Callable[..., Terminal], ana: ChatClient, key: str
) -> None:
    term = join_beto(spawn, ana)
    term.send(KEYS[key])
    assert term.exit_status() == 0
    ana.expect("[SERVER] Client: beto disconnected!")
    last = ["Me: :q", proto.GOODBYE] if key == ":q" else [proto.GOODBYE]
    assert term.rows() == [*handshake("beto", 5), *last]


def test_ctrl_c_while_typing_leaves_with_the_goodbye_on_its_own_line(
    spawn: Callable[..., Terminal], ana: ChatClient
) -> None:
    term = join_beto(spawn, ana)
    term.send("half typed")
    term.wait_prompt("half typed")
    term.send("\x03")
    assert term.exit_status() == 0
    ana.expect("[SERVER] Client: beto disconnected!")
    # Lo que se estaba escribiendo no se envía ni queda pegado a la despedida.
    assert term.rows() == [*handshake("beto", 5), proto.GOODBYE]
    assert not [line for line in ana.lines if "half typed" in line]


def test_sigint_from_outside_leaves_like_q(spawn: Callable[..., Terminal], ana: ChatClient) -> None:
    term = join_beto(spawn, ana)
    term.child.kill(signal.SIGINT)
    assert term.exit_status() == 0
    ana.expect("[SERVER] Client: beto disconnected!")
    assert term.rows() == [*handshake("beto", 5), proto.GOODBYE]


class RecordingServer:
    """Un servidor de mentira que hace las preguntas del saludo y guarda cada byte que recibe."""

    def __init__(self, *questions: str) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()[:2]
        self.questions = questions
        self.received = bytearray()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.sendall(f"{proto.WELCOME}\n{self.questions[0]}\n".encode())
            for question in self.questions[1:]:
                while not self.received.endswith(b"\n"):
                    self.received += conn.recv(4096)
                conn.sendall(f"{question}\n".encode())
            while data := conn.recv(4096):
                self.received += data

    def close(self) -> bytes:
        self.thread.join(WAIT)
        self.listener.close()
        return bytes(self.received)


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("asked", ["identifier", "balance"])
def test_leaving_keys_are_never_sent_as_an_answer(key: str, asked: str) -> None:
    if asked == "identifier":
        fake, args, sent = RecordingServer(proto.ASK_IDENTIFIER), [], b""
    else:
        fake, args, sent = (
            RecordingServer(proto.ASK_IDENTIFIER, proto.ASK_BALANCE),
            ["--name", "beto"],
            b"beto\n",
        )
    host, port = fake.address
    term = Terminal("--host", host, "--port", str(port), *args)
    try:
        term.wait_row(fake.questions[-1])
        term.wait_for(lambda: term.cursor_row() == ("", 0), "the answer prompt")
        term.send(KEYS[key])
        assert term.exit_status() == 0
    finally:
        term.kill()
    assert fake.close() == sent


@pytest.mark.parametrize("ignore_sigint", [False, True], ids=["default", "sigint-ignored"])
def test_server_going_away_ends_the_client_with_1(
    spawn: Callable[..., Terminal], ana: ChatClient, server: ChatServer, ignore_sigint: bool
) -> None:
    term = spawn("--name", "beto", "--balance", "5", ignore_sigint=ignore_sigint)
    term.wait_prompt()
    term.send("half")
    term.wait_prompt("half")
    server.stop()
    assert term.exit_status() == 1
    assert term.rows() == [*handshake("beto", 5), SHUTDOWN_NOTICE, LOST]


def test_server_going_away_during_the_handshake(spawn: Callable[..., Terminal], server: ChatServer) -> None:
    term = spawn()
    term.wait_row(proto.ASK_IDENTIFIER)
    server.stop()
    assert term.exit_status() == 1
    assert term.rows() == [proto.WELCOME, proto.ASK_IDENTIFIER, SHUTDOWN_NOTICE, LOST]


# Como en Git Bash (mintty) en Windows: prompt_toolkit no encuentra una consola que entienda.
NO_CONSOLE = """
import sys
import prompt_toolkit.output.defaults as defaults
from chatlib.client import main


def no_console(*args, **kwargs):
    raise RuntimeError("Found xterm, while expecting a Windows console")


defaults.create_output = no_console
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("key", ["ctrl-c", "ctrl-d"])
def test_without_a_usable_console_falls_back_to_plain_lines(
    server: ChatServer, ana: ChatClient, key: str
) -> None:
    host, port = server.address
    args = ("--host", host, "--port", str(port), "--name", "beto", "--balance", "5")
    term = Terminal(*args, python=["-c", NO_CONSOLE], columns=160)  # el aviso entero en una fila
    try:
        term.wait_row(proto.balance_set_line(5))
        ana.expect("[SERVER] Client: beto connected!")
        term.send("hola\r")  # la terminal repite lo tecleado: el cliente no lo escribe de nuevo
        ana.expect("beto: hola")
        term.send(KEYS[key])
        assert term.exit_status() == 0
        ana.expect("[SERVER] Client: beto disconnected!")
        notice = (
            "This terminal cannot be used for line editing "
            "(Found xterm, while expecting a Windows console); using plain line mode."
        )
        echoed = ["^C"] if key == "ctrl-c" else []  # lo que la propia terminal muestra al teclear
        assert term.rows() == [notice, *handshake("beto", 5), "hola", *echoed, proto.GOODBYE]
    finally:
        term.kill()


def test_a_dumb_terminal_gets_plain_lines(spawn: Callable[..., Terminal], ana: ChatClient) -> None:
    term = spawn("--name", "beto", "--balance", "5", term="dumb", columns=100)
    term.wait_row(proto.balance_set_line(5))
    term.send(":funds\r")
    term.wait_row(proto.funds_line(5))
    term.send("\x04")
    assert term.exit_status() == 0
    notice = "This terminal cannot be used for line editing (TERM=dumb); using plain line mode."
    assert term.rows() == [notice, *handshake("beto", 5), ":funds", proto.funds_line(5), proto.GOODBYE]


class Piped:
    """El cliente con la entrada y la salida en tuberías (como ``echo ... | python -m chatlib.client``)."""

    def __init__(self, server: ChatServer, *args: str, ignore_sigint: bool = False) -> None:
        host, port = server.address
        command = [sys.executable, "-m", "chatlib.client", "--host", host, "--port", str(port), *args]
        self.child = pexpect.popen_spawn.PopenSpawn(
            command,
            cwd=str(ROOT),
            encoding="utf-8",
            timeout=WAIT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=_ignore_sigint if ignore_sigint else None,
        )
        self.seen: list[str] = []

    def expect(self, line: str) -> None:
        """La próxima línea de la salida (estándar y de errores) es exactamente ``line``."""
        got = self.child.readline().rstrip("\n")
        self.seen.append(got)
        assert got == line, f"expected {line!r}; seen {self.seen!r}"

    def send(self, text: str) -> None:
        self.child.sendline(text)

    def exit_status(self) -> int:
        self.child.expect(pexpect.EOF)
        status = self.child.wait()
        assert isinstance(status, int)
        return status

    def kill(self) -> None:
        if self.child.proc.poll() is None:
            self.child.proc.kill()
        self.child.proc.wait(WAIT)


@pytest.fixture
def piped(server: ChatServer) -> Iterator[Callable[..., Piped]]:
    clients: list[Piped] = []

    def make(*args: str, **options: bool) -> Piped:
        clients.append(Piped(server, *args, **options))
        return clients[-1]

    yield make
    for client in clients:
        client.kill()


def test_plain_mode_through_pipes_shows_the_whole_conversation(
    piped: Callable[..., Piped], ana: ChatClient
) -> None:
    beto = piped()
    beto.send("beto")  # todo el saludo de una vez, antes de las preguntas, como con echo
    beto.send("3000")
    for line in handshake("beto", 3000):  # lo leído de la tubería se muestra como si se escribiera
        beto.expect(line)
    ana.expect("[SERVER] Client: beto connected!")
    ana.send("Hola!")
    beto.expect("ana: Hola!")
    for typed, shown, reply in [
        (":funds", "Me: :funds", "[SERVER] Client: You have 3000 dollars."),
        (":t - ana - 10000", "Me: :t - ana - 10000", proto.INSUFFICIENT_FUNDS),
    ]:
        beto.send(typed)
        beto.expect(shown)
        beto.expect(reply)
    beto.send(":smile uwu")
    beto.expect("Me: :~) uwu")
    ana.expect("beto: :~) uwu")
    beto.child.sendeof()
    beto.expect(proto.GOODBYE)
    assert beto.exit_status() == 0
    ana.expect("[SERVER] Client: beto disconnected!")


def test_plain_mode_holds_piped_lines_until_the_automatic_answers_are_in(
    piped: Callable[..., Piped], ana: ChatClient
) -> None:
    beto = piped("--name", "beto", "--balance", "7")
    beto.send(":funds")  # ya está en la tubería antes de que pregunten nada
    beto.child.sendeof()
    for line in [*handshake("beto", 7), "Me: :funds", proto.funds_line(7), proto.GOODBYE]:
        beto.expect(line)
    assert beto.exit_status() == 0
    ana.expect("[SERVER] Client: beto connected!")
    ana.expect("[SERVER] Client: beto disconnected!")


def test_plain_mode_q_and_sigint_leave_with_the_goodbye(piped: Callable[..., Piped], ana: ChatClient) -> None:
    for name, leave in [("beto", "q"), ("carol", "sigint")]:
        client = piped("--name", name, "--balance", "1")
        for line in handshake(name, 1):
            client.expect(line)
        ana.expect(f"[SERVER] Client: {name} connected!")
        if leave == "q":
            client.send(":q")
            client.expect("Me: :q")
        else:
            client.child.kill(signal.SIGINT)
        client.expect(proto.GOODBYE)
        assert client.exit_status() == 0
        ana.expect(f"[SERVER] Client: {name} disconnected!")


@pytest.mark.parametrize("ignore_sigint", [False, True], ids=["default", "sigint-ignored"])
def test_plain_mode_reports_a_lost_server_with_1(
    piped: Callable[..., Piped], server: ChatServer, ignore_sigint: bool
) -> None:
    client = piped("--name", "beto", "--balance", "1", ignore_sigint=ignore_sigint)
    for line in handshake("beto", 1):
        client.expect(line)
    server.stop()  # la entrada sigue abierta: el cliente no espera a que se cierre
    client.expect(SHUTDOWN_NOTICE)
    client.expect(LOST)
    assert client.exit_status() == 1


def test_cannot_connect_exits_with_2() -> None:
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
    assert result.stderr.startswith(f"Cannot connect to {host}:{port}: ")
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("typed", "joined", "shown"),
    [
        ("beto", False, "beto"),
        ("  3000 ", False, "3000"),
        (":smile", True, "Me: :~)"),
        (":smile hola", True, "Me: :~) hola"),
        ("hola :angry :confused", True, "Me: hola >:( :S"),
        (":funds", True, "Me: :funds"),
        (":p - ana - :smile", True, "Me: :p - ana - :smile"),
        ("a\x1b[2Jb", True, "Me: a[2Jb"),
        ("   ", True, None),
    ],
)
def test_own_line(typed: str, joined: bool, shown: str | None) -> None:
    assert own_line(typed, joined) == shown
