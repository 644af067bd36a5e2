"""Cliente del chat: uno para usar dentro de Python (notebooks, pruebas) y uno de terminal.

``ChatClient`` abre el socket y un hilo lector que guarda cada línea recibida;
``expect`` espera una línea con un plazo, como un test de miniircd o pexpect.
``python -m chatlib.client`` es el programa interactivo: el indicador es
``Me: ``, así que lo escrito por el usuario se lee ``Me: texto`` como en el
enunciado, y las líneas que llegan mientras se escribe no rompen la línea.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TextIO

from chatlib import protocol as proto

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


class TerminalClient:
    """El cliente interactivo: un hilo lee del socket y el principal lee del teclado.

    Con una terminal real se usa ``readline``: antes de imprimir una línea que
    llega se borra la línea en edición y después se vuelve a dibujar el
    indicador con lo que el usuario llevaba escrito.
    """

    PROMPT = "Me: "

    def __init__(
        self,
        sock: socket.socket,
        *,
        name: str | None = None,
        balance: int | None = None,
        stdin: TextIO = sys.stdin,
        stdout: TextIO = sys.stdout,
    ) -> None:
        self.sock = sock
        self.stdin = stdin
        self.stdout = stdout
        self.interactive = stdin.isatty() and stdout.isatty()
        self._auto = {
            proto.ASK_IDENTIFIER: name,
            proto.ASK_BALANCE: None if balance is None else str(balance),
        }
        self._print_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self.joined = False
        self.said_goodbye = threading.Event()
        self.lost = threading.Event()
        self.reading_keyboard = False
        # Turno de escribir: en una terminal no se muestra el indicador hasta que el
        # servidor espera algo del usuario (una pregunta sin respuesta automática o
        # el chat ya unido), así el indicador es siempre el correcto.
        self._turn = threading.Event()
        self._active_prompt: str | None = None
        self._readline = None
        if self.interactive:
            try:
                import readline

                self._readline = readline
            except ImportError:
                pass

    @property
    def prompt(self) -> str:
        """Antes de unirse el usuario responde preguntas; después escribe como ``Me:``."""
        return self.PROMPT if self.joined else ""

    def show(self, line: str) -> None:
        """Imprime una línea recibida sin romper lo que el usuario está escribiendo."""
        with self._print_lock:
            if self.interactive and self._active_prompt is not None:
                typed = self._readline.get_line_buffer() if self._readline else ""
                self.stdout.write(f"\r\x1b[K{line}\n{self._active_prompt}{typed}")
            else:
                self.stdout.write(line + "\n")
            self.stdout.flush()

    def send(self, text: str) -> None:
        """Envía una línea al servidor."""
        with self._send_lock:
            self.sock.sendall((text + "\n").encode(proto.ENCODING))

    def read_socket(self) -> None:
        """Hilo lector: muestra lo recibido y responde sola las preguntas pedidas por opción."""
        for lines in _server_lines(self.sock):
            for raw in lines:
                line = proto.sanitize(raw)
                if proto.is_balance_set_line(line):
                    self.joined = True
                self.show(line)
                if line == proto.GOODBYE:
                    self.said_goodbye.set()
                answer = self._auto.get(line)
                if answer is not None:
                    self._auto[line] = None
                    self.send(answer)
                    if not self.interactive:
                        self.show(answer)
                elif self.joined or line in self._auto:
                    self._turn.set()
        self._turn.set()
        if not self.said_goodbye.is_set():
            self.lost.set()
            with self._print_lock:
                print("\nThe connection to the server was lost.", file=sys.stderr, flush=True)
            if self.reading_keyboard:
                # Despierta al hilo principal, bloqueado leyendo el teclado.
                os.kill(os.getpid(), signal.SIGINT)

    def read_keyboard(self) -> None:
        """Hilo principal: cada línea escrita se envía; EOF o Ctrl-C equivalen a ``:q``."""
        self.reading_keyboard = True
        try:
            self._keyboard_loop()
        finally:
            self.reading_keyboard = False

    def _keyboard_loop(self) -> None:
        while not self.said_goodbye.is_set():
            try:
                if self.interactive:
                    self._turn.wait()
                    if self.said_goodbye.is_set() or self.lost.is_set():
                        return
                    self._active_prompt = self.prompt
                    try:
                        text = input(self._active_prompt)
                    finally:
                        self._active_prompt = None
                    if not self.joined:
                        self._turn.clear()
                else:
                    text = self.stdin.readline()
                    if not text:
                        raise EOFError
                    text = text.rstrip("\r\n")
                    if self.joined:
                        self.show(f"{self.PROMPT}{text}")
            except (EOFError, KeyboardInterrupt):
                if self.interactive:
                    # Ctrl-C/Ctrl-D dejan el cursor tras lo escrito: la despedida va en otra línea.
                    with self._print_lock:
                        self.stdout.write("\n")
                        self.stdout.flush()
                if self.lost.is_set():
                    return
                self.quit()
                return
            try:
                self.send(text)
            except OSError:
                return
            if text.strip() == ":q":
                self.said_goodbye.wait(2.0)
                return

    def quit(self) -> None:
        """Salida limpia: ``:q`` y esperar la despedida unos instantes."""
        try:
            self.send(":q")
        except OSError:
            return
        self.said_goodbye.wait(2.0)


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
    client = TerminalClient(sock, name=args.name, balance=args.balance)
    reader = threading.Thread(target=client.read_socket, name="chatlib-terminal-reader", daemon=True)
    reader.start()
    try:
        client.read_keyboard()
    except KeyboardInterrupt:
        pass
    finally:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
        reader.join(1.0)
    if client.lost.is_set() and not client.said_goodbye.is_set():
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
