"""Cliente del chat: uno para usar dentro de Python (notebooks, pruebas) y uno de terminal.

``ChatClient`` abre el socket y un hilo lector que guarda cada línea recibida;
``expect`` espera una línea con un plazo, como un test de miniircd o pexpect.
``python -m chatlib.client`` es el programa interactivo: el indicador es
``Me: ``, así que lo escrito por el usuario se lee ``Me: texto`` como en el
enunciado. En una terminal la línea la edita ``prompt_toolkit`` (Linux, macOS
y la consola de Windows) y lo que llega se imprime encima sin tocar lo que se
está escribiendo; con una tubería, o si la terminal no sirve, se leen líneas.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import queue
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from chatlib import protocol as proto

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession

Address = tuple[str, int]
Pattern = str | re.Pattern[str] | Callable[[str], bool]
MAX_SERVER_LINE = 1 << 20


def _server_lines(sock: socket.socket) -> Iterator[list[str]]:
    """Lotes de líneas recibidas (una lista por ``recv``) hasta que la conexión termine.

    Un error de encuadre se muestra como ``<explicación>`` en vez de perder la línea.
    """
    framer = proto.LineBuffer(MAX_SERVER_LINE)
    try:
        while data := sock.recv(65536):
            yield [item if isinstance(item, str) else f"<{item}>" for item in framer.feed(data)]
    except OSError:
        return


def _matcher(pattern: Pattern) -> Callable[[str], bool]:
    """Convierte un patrón (línea exacta, regex o predicado) en un predicado."""
    if isinstance(pattern, str):
        return lambda line: line == pattern
    if isinstance(pattern, re.Pattern):
        return lambda line: pattern.search(line) is not None
    return pattern


class ChatClient:
    """Cliente en proceso: envía líneas y registra todo lo recibido con su hora.

    ``lines`` son las líneas recibidas; ``transcript`` es lo que vería el
    usuario en su terminal (recibidas más ``Me: ...`` por cada envío ya unido
    al chat); ``events`` guarda ``(time.monotonic(), "in"|"out", línea)``.
    """

    def __init__(self, address: Address, *, timeout: float = 5.0) -> None:
        self.address = address
        self.timeout = timeout
        self._sock = socket.create_connection(address, timeout=timeout)
        self._sock.settimeout(None)
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self.lines: list[str] = []
        self.transcript: list[str] = []
        self.events: list[tuple[float, str, str]] = []
        self.joined = False
        self.connected = True
        self._cursor = 0
        self._reader = threading.Thread(target=self._read_loop, name="chatlib-client-reader", daemon=True)
        self._reader.start()

    @classmethod
    def join(cls, address: Address, identifier: str, balance: int, *, timeout: float = 5.0) -> ChatClient:
        """Conecta y completa el saludo; retorna un cliente ya unido al chat."""
        client = cls(address, timeout=timeout)
        try:
            client.expect(proto.ASK_IDENTIFIER)
            client.send(identifier)
            client.expect(proto.ASK_BALANCE)
            client.send(str(balance))
            client.expect(proto.balance_set_line(balance))
        except BaseException:
            client.close()
            raise
        return client

    def _read_loop(self) -> None:
        try:
            for lines in _server_lines(self._sock):
                with self._cond:
                    for line in lines:
                        self._record_in(line)
                    self._cond.notify_all()
        finally:
            with self._cond:
                self.connected = False
                self._cond.notify_all()

    def _record_in(self, line: str) -> None:
        self.lines.append(line)
        self.transcript.append(line)
        self.events.append((time.monotonic(), "in", line))
        if proto.is_balance_set_line(line):
            self.joined = True

    def send(self, text: str) -> None:
        """Envía una línea; en la transcripción aparece como ``Me: texto``."""
        with self._cond:
            self.transcript.append(f"Me: {text}" if self.joined else text)
            self.events.append((time.monotonic(), "out", text))
        with self._send_lock:
            self._sock.sendall((text + "\n").encode(proto.ENCODING))

    def send_raw(self, data: bytes) -> None:
        """Envía bytes tal cual (para probar entradas inválidas)."""
        with self._send_lock:
            self._sock.sendall(data)

    def expect(self, pattern: Pattern, timeout: float | None = None) -> str:
        """Espera la próxima línea (desde el cursor) que calce con ``pattern`` y la retorna.

        El cursor avanza hasta la línea encontrada, así que llamadas sucesivas
        leen la conversación en orden. Lanza ``TimeoutError`` con las líneas vistas.
        """
        match = _matcher(pattern)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self._cond:
            while True:
                for index in range(self._cursor, len(self.lines)):
                    if match(self.lines[index]):
                        self._cursor = index + 1
                        return self.lines[index]
                seen = self.lines[self._cursor :]
                if not self.connected:
                    raise ConnectionError(f"connection closed before {pattern!r}; unread: {seen!r}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no line matched {pattern!r}; unread: {seen!r}")
                self._cond.wait(remaining)

    def expect_all(self, expected: list[str], timeout: float | None = None) -> None:
        """Espera a que lleguen todas las líneas ``expected``, en cualquier orden.

        Sirve cuando varios usuarios escriben a la vez: el orden entre emisores
        distintos no está definido, el de un mismo emisor sí. No mueve el cursor.
        """
        wanted = list(expected)
        with self._cond:
            ok = self._cond.wait_for(
                lambda: not [line for line in wanted if line not in self.lines] or not self.connected,
                self.timeout if timeout is None else timeout,
            )
            missing = [line for line in wanted if line not in self.lines]
        if missing:
            reason = "connection closed" if ok else "timed out"
            raise TimeoutError(f"{reason}; still missing {missing!r}")

    def unread(self) -> list[str]:
        """Líneas recibidas después del cursor."""
        with self._cond:
            return self.lines[self._cursor :]

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Espera a que el servidor cierre la conexión."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self.connected, self.timeout if timeout is None else timeout
            )

    def quit(self, timeout: float | None = None) -> None:
        """``:q``: espera la despedida del servidor y cierra."""
        self.send(":q")
        try:
            self.expect(proto.GOODBYE, timeout)
            self.wait_closed(timeout)
        finally:
            self.close()

    def close(self) -> None:
        """Cierra el socket sin despedirse (una desconexión abrupta, vista desde el servidor)."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._reader.join(self.timeout)

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


GOODBYE_WAIT = 2.0
# Las esperas del hilo principal tienen plazo: en Windows una espera sin plazo no deja pasar Ctrl-C.
_WAKE_EVERY = 0.5


def own_line(text: str, joined: bool) -> str | None:
    """Cómo ve el usuario lo que acaba de escribir; ``None`` si no hay nada que mostrar.

    En el saludo la respuesta se muestra tal cual (``beto``, ``50000``), como en
    el enunciado. Ya en el chat un mensaje se muestra como lo verán los demás
    (``:smile`` es ``Me: :~)``, igual que lo dibuja el servidor); un comando se
    muestra como se escribió.
    """
    clean = proto.sanitize(text).strip()
    if not joined:
        return clean
    if proto.parse_line(clean).name == "chat":
        clean = proto.render_emojis(proto.sanitize(text)).strip()
    return f"{TerminalClient.PROMPT}{clean}" if clean else None


class _Interrupted(Exception):
    """Saca al indicador de su espera: la conexión terminó o llegó una señal de salida."""


class TerminalClient:
    """El cliente interactivo: un hilo lee del socket y el principal atiende al usuario.

    En una terminal el teclado y la pantalla son de ``prompt_toolkit``: el
    indicador ``Me: `` se borra, se escribe encima la línea que llegó y se
    vuelve a dibujar con el texto y el cursor donde estaban; todo lo que se
    escribe en la pantalla pasa por el hilo del bucle de eventos, así nunca hay
    dos escritores a la vez. Sin terminal (una tubería) se leen líneas de la
    entrada estándar y cada una se muestra como ``Me: texto``.
    """

    PROMPT = "Me: "

    def __init__(self, sock: socket.socket, *, name: str | None = None, balance: int | None = None) -> None:
        self.sock = sock
        self._auto = {
            proto.ASK_IDENTIFIER: name,
            proto.ASK_BALANCE: None if balance is None else str(balance),
        }
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._state_changed = threading.Condition(self._state_lock)
        self._asked = False
        self.joined = False
        self.said_goodbye = threading.Event()
        self.ended = threading.Event()
        self.lost = False
        self._hung_up = False
        self.show: Callable[[str], None] = self._print_plain
        self.show_error: Callable[[str], None] = self._print_plain_error
        self.on_end: Callable[[], None] = lambda: None
        self._print_lock = threading.Lock()

    def send(self, text: str) -> None:
        """Envía una línea al servidor."""
        with self._send_lock:
            self.sock.sendall((text + "\n").encode(proto.ENCODING))

    def read_socket(self) -> None:
        """Hilo lector: muestra lo recibido y responde sola las preguntas pedidas por opción."""
        try:
            for lines in _server_lines(self.sock):
                for raw in lines:
                    self._receive(proto.sanitize(raw))
        finally:
            with self._state_changed:
                self.ended.set()
                self.lost = not self.said_goodbye.is_set() and not self._hung_up
                self._state_changed.notify_all()
            if self.lost:
                self.show_error("The connection to the server was lost.")
            self.on_end()

    def _receive(self, line: str) -> None:
        self.show(line)
        if line == proto.GOODBYE:
            self.said_goodbye.set()
        answer = self._auto.get(line)
        if answer is not None:
            # Se muestra como si el usuario la hubiera escrito: la transcripción es la del enunciado.
            self._auto[line] = None
            self.show(answer)
            self._send_quietly(answer)
        with self._state_changed:
            self.joined = self.joined or proto.is_balance_set_line(line)
            self._asked = self._asked or (line in self._auto and answer is None)
            self._state_changed.notify_all()

    def wait_turn(self) -> bool:
        """Espera a que el servidor espere algo del usuario; ``False`` si la conexión terminó.

        Antes de unirse, cada respuesta espera su pregunta: en una tubería las
        líneas están todas desde el principio y no deben adelantarse a las
        respuestas automáticas de ``--name``/``--balance``.
        """
        with self._state_changed:
            while not self._state_changed.wait_for(
                lambda: self.joined or self._asked or self.ended.is_set(), _WAKE_EVERY
            ):
                pass
            if not self.joined:
                self._asked = False
            return not self.ended.is_set()

    def _send_quietly(self, text: str) -> None:
        # Si el envío falla, la conexión terminó y el hilo lector lo informa.
        with contextlib.suppress(OSError):
            self.send(text)

    def submit(self, text: str, *, echo: bool = True) -> bool:
        """Procesa una línea escrita; ``False`` si el usuario pidió salir con ``:q``.

        Lo propio se muestra antes de enviarlo, así ``Me: ...`` queda antes de la respuesta.
        """
        leaving = text.strip() == ":q"
        if leaving and not self.joined:
            return False
        shown = own_line(text, self.joined)
        if shown is None:
            return True
        if echo:
            self.show(shown)
        if not leaving:
            self._send_quietly(text)
        return not leaving

    def start_goodbye(self) -> bool:
        """Salir ya unido es enviar ``:q`` y esperar la despedida; antes, basta colgar."""
        if not self.joined or self.ended.is_set():
            return False
        try:
            self.send(":q")
        except OSError:
            return False
        return True

    def hang_up(self) -> None:
        """Cierra el socket; si la conexión seguía viva, el cierre es del usuario, no una pérdida."""
        with self._state_lock:
            if not self.ended.is_set():
                self._hung_up = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def _print_plain(self, line: str) -> None:
        with self._print_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def _print_plain_error(self, line: str) -> None:
        with self._print_lock:
            sys.stdout.flush()
            print(line, file=sys.stderr, flush=True)

    def run(self) -> int:
        """Atiende al usuario hasta que salga o se pierda la conexión; retorna el código de salida."""
        session = None
        if sys.stdin.isatty() and sys.stdout.isatty():
            try:
                session = open_console()
            except Exception as exc:  # cada plataforma falla a su manera (mintty, el panel de un IDE)
                print(
                    f"This terminal cannot be used for line editing ({exc}); using plain line mode.",
                    file=sys.stderr,
                    flush=True,
                )
        reader = threading.Thread(target=self.read_socket, name="chatlib-terminal-reader", daemon=True)
        try:
            if session is None:
                self._run_plain(reader, echo=not sys.stdin.isatty())
            else:
                asyncio.run(_ConsoleRun(self, session, reader).main())
        except KeyboardInterrupt:
            pass
        finally:
            self.hang_up()
            if reader.is_alive():
                reader.join(1.0)
        return 1 if self.lost else 0

    def _run_plain(self, reader: threading.Thread, *, echo: bool) -> None:
        """Modo de líneas: un hilo lee la entrada estándar y este hilo atiende cada línea."""
        inbox: queue.Queue[str | None] = queue.Queue()
        self.on_end = lambda: inbox.put(None)

        def read_stdin() -> None:
            try:
                for line in iter(sys.stdin.readline, ""):
                    inbox.put(line.rstrip("\r\n"))
            except (OSError, ValueError):
                pass  # una entrada que no se puede leer (``nohup``) es como una que terminó
            inbox.put(None)

        threading.Thread(target=read_stdin, name="chatlib-terminal-stdin", daemon=True).start()
        reader.start()
        try:
            while (text := _next_line(inbox)) is not None and self.wait_turn():
                if not self.submit(text, echo=echo):
                    break
        except KeyboardInterrupt:
            if not echo:
                self.show("")  # la terminal dejó "^C" en la línea: la despedida va debajo
        if self.start_goodbye():
            self.ended.wait(GOODBYE_WAIT)


def _next_line(inbox: queue.Queue[str | None]) -> str | None:
    """Espera la próxima línea; ``None`` es fin de la entrada o de la conexión."""
    while True:
        with contextlib.suppress(queue.Empty):
            return inbox.get(timeout=_WAKE_EVERY)


def open_console() -> PromptSession[str]:
    """El editor de líneas de ``prompt_toolkit``; falla si la terminal no es una consola que entienda.

    Se importa aquí: ``ChatClient`` (pruebas, cuadernos) no lo necesita. Una
    terminal ``TERM=dumb`` (el shell de Emacs) no sabe borrar el indicador.
    """
    from prompt_toolkit import PromptSession
    from prompt_toolkit.utils import is_dumb_terminal

    if is_dumb_terminal():
        raise RuntimeError("TERM=dumb")
    return PromptSession(erase_when_done=True)


class _ConsoleRun:
    """Una sesión en la terminal: el bucle de eventos dibuja todo, en orden, desde un solo hilo.

    Los hilos (el lector del socket) no escriben en la pantalla: dejan líneas
    en una cola del bucle y una sola tarea las imprime sobre el indicador. Que
    la conexión termine o que llegue SIGINT también se avisa al bucle, que
    interrumpe el indicador: nadie se envía señales.
    """

    def __init__(self, client: TerminalClient, session: PromptSession[str], reader: threading.Thread) -> None:
        self.client = client
        # Se mira antes de asyncio.run, que instala su propio manejador; ignorada (nohup) se respeta.
        self.catch_sigint = signal.getsignal(signal.SIGINT) is signal.default_int_handler
        self.session = session
        self.reader = reader
        self.leave_requested = False
        # El indicador pasa a ``Me: `` cuando la confirmación del saldo ya está en pantalla,
        # no cuando el lector la recibe: así nunca se dibuja antes que las líneas que lo preceden.
        self.joined_on_screen = False

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        ended = asyncio.Event()
        client = self.client

        def in_loop(callback: Callable[..., None], *args: object) -> None:
            try:
                loop.call_soon_threadsafe(callback, *args)
            except RuntimeError:
                pass  # el bucle ya cerró: no queda pantalla que actualizar

        def on_end() -> None:
            ended.set()
            self._interrupt()

        client.show = client.show_error = lambda line: in_loop(lines.put_nowait, line)
        client.on_end = lambda: in_loop(on_end)
        printer = asyncio.ensure_future(self._print_lines(lines))
        self._catch_sigint(loop)
        self.reader.start()
        try:
            await self._prompt_loop()
            if client.start_goodbye():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ended.wait(), GOODBYE_WAIT)
        finally:
            client.hang_up()
            await loop.run_in_executor(None, self.reader.join, 1.0)
            lines.put_nowait(None)
            await printer

    async def _prompt_loop(self) -> None:
        """Un indicador tras otro; la terminal queda en modo crudo también entre ellos.

        En modo cocido la terminal repetiría por su cuenta lo que se teclee
        entre dos indicadores (``:funds`` suelto en pantalla); en crudo esas
        teclas esperan al siguiente indicador, y Ctrl-C es una tecla más.
        """
        client = self.client
        with self.session.input.raw_mode():
            while not client.ended.is_set() and not self.leave_requested:
                try:
                    text = await self.session.prompt_async(self._message, handle_sigint=False)
                except (KeyboardInterrupt, EOFError, _Interrupted):
                    return
                if not client.submit(text):
                    return

    def _message(self) -> str:
        return TerminalClient.PROMPT if self.joined_on_screen else ""

    def _interrupt(self) -> None:
        """En el bucle: termina el indicador activo, si lo hay; si no, el bucle de arriba ya lo verá."""
        from prompt_toolkit.application import get_app_or_none

        app = get_app_or_none()
        if app is not None and app.is_running and app.future is not None and not app.future.done():
            app.exit(exception=_Interrupted())

    def _catch_sigint(self, loop: asyncio.AbstractEventLoop) -> None:
        """SIGINT fuera del indicador (``kill -INT``) sale como ``:q``."""
        if sys.platform == "win32" or not self.catch_sigint:
            return

        def on_sigint() -> None:
            self.leave_requested = True
            self._interrupt()

        loop.add_signal_handler(signal.SIGINT, on_sigint)

    async def _print_lines(self, lines: asyncio.Queue[str | None]) -> None:
        """Imprime sobre el indicador, en orden y por tandas, hasta recibir ``None``."""
        while True:
            batch = [await lines.get()]
            while not lines.empty():
                batch.append(lines.get_nowait())
            shown = [line for line in batch if line is not None]
            if shown:
                self._write(shown)
            if len(shown) < len(batch):
                return

    def _write(self, lines: list[str]) -> None:
        """Borra el indicador, escribe las líneas y pide dibujarlo de nuevo debajo.

        Es lo que hace ``run_in_terminal``, salvo que la terminal sigue en modo
        crudo: con el modo cocido de por medio, una tecla pulsada justo entonces
        la mostraría la propia terminal, fuera de lugar.
        """
        from prompt_toolkit.application import get_app_or_none

        app = get_app_or_none()
        output = self.session.output
        # También si el indicador ya se aceptó pero aún no se borra (tecleo adelantado).
        if app is not None and app.is_running:
            app.renderer.erase()
        output.enable_autowrap()
        output.write("".join(f"{line}\n" for line in lines))
        output.flush()
        if any(proto.is_balance_set_line(line) for line in lines):
            self.joined_on_screen = True
        if app is not None and app.is_running and not app.is_done:
            app.renderer.request_absolute_cursor_position()
            app.invalidate()


def build_parser() -> argparse.ArgumentParser:
    """Opciones de línea de comandos del cliente."""
    parser = argparse.ArgumentParser(prog="python -m chatlib.client", description="Terminal chat client.")
    parser.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="server port (default 5000)")
    parser.add_argument("--name", help="answer the identifier question automatically")
    parser.add_argument("--balance", type=int, help="answer the balance question automatically")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Punto de entrada: 0 al salir con ``:q``, 1 si se pierde la conexión, 2 si no conecta."""
    args = build_parser().parse_args(argv)
    try:
        sock = socket.create_connection((args.host, args.port), timeout=5)
    except OSError as exc:
        print(f"Cannot connect to {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    sock.settimeout(None)
    return TerminalClient(sock, name=args.name, balance=args.balance).run()


if __name__ == "__main__":
    sys.exit(main())
