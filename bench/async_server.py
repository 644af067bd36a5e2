"""Servidor de chat de referencia con ``asyncio`` (un solo hilo, un bucle de eventos).

Habla el mismo protocolo que ``chatlib.server`` (saludo, identificador, saldo,
líneas de chat, ``:q``, ``:t``, ``:funds``) para que el benchmark compare
"un hilo por conexión" contra "bucle de eventos" con el mismo tráfico.

Se escribió para ser una referencia justa, no un rival débil:

* lee con ``reader.read()`` y procesa todas las líneas completas de una vez,
  escribiendo a cada destinatario una sola vez por lote (lo mismo que hace el
  servidor con hilos);
* escribe con ``writer.write`` (que ya intenta un ``send`` inmediato y solo
  encola si el kernel está lleno);
* contrapresión acotada: si tras un lote algún destinatario tiene más de
  ``HIGH_WATER`` bytes en cola, el emisor espera su ``drain()`` (un lector
  sano pero más lento que una inundación no pierde mensajes), salvo que ese
  destinatario no avance en ``--stall-timeout`` segundos: entonces se le
  marca como colgado y no se le espera más;
* un cliente que acumula más de ``--max-backlog`` bytes se desconecta (la
  misma política que la cola acotada de ``chatlib.outbox``);
* ``TCP_NODELAY`` en cada socket (asyncio ya lo activa; se deja explícito).

Uso: ``python bench/async_server.py --host 127.0.0.1 --port 0``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import socket
import sys
from typing import Final

# Los textos del protocolo son el contrato: se toman de chatlib para que ambos
# servidores hablen exactamente las mismas líneas; la implementación es propia.
from chatlib.protocol import (
    ASK_BALANCE,
    ASK_IDENTIFIER,
    EMOJIS,
    ENCODING,
    GOODBYE,
    INSUFFICIENT_FUNDS,
    MAX_LINE_BYTES,
    SERVER_PREFIX,
    WELCOME,
)

_IDENTIFIER_RE: Final = re.compile(r"[A-Za-z0-9_.\-]{1,24}")
_COMMAND_RE: Final = re.compile(r":[A-Za-z]+")
# Controles C0/C1 y de dirección de texto: los mismos que quita chatlib.protocol.sanitize.
_UNSAFE_RE: Final = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
HIGH_WATER: Final = 256 * 1024
_AMOUNT_RE: Final = re.compile(r"[0-9]{1,13}")
_TRANSFER_RE: Final = re.compile(r":t\s+-\s+(\S+)\s+-\s+(\S+)")


def _encode(line: str) -> bytes:
    """Una línea de protocolo lista para el socket."""
    return (line + "\n").encode(ENCODING)


def clean_text(text: str) -> str:
    """Sanea y pone emojis como ``chatlib`` (mismo resultado, mismo trabajo útil).

    ``isprintable()`` corre en C y es cierto para casi todo mensaje real, así
    que la expresión regular solo se aplica cuando hay algo que quitar.
    """
    if not text.isprintable():
        text = _UNSAFE_RE.sub("", text.replace("\t", " "))
    if ":" in text:
        text = " ".join(EMOJIS.get(word, word) for word in text.split(" "))
    return text.strip()


def is_command(text: str) -> bool:
    """Comando = primera palabra ``:letras`` que no sea un emoji (``:)`` es un mensaje)."""
    first = text.split(maxsplit=1)[0] if text.strip() else ""
    return _COMMAND_RE.fullmatch(first) is not None and first not in EMOJIS


class Session:
    """Un cliente conectado: su nombre, su saldo y su escritor."""

    __slots__ = ("name", "key", "balance", "writer", "closed", "stalled")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.name = ""
        self.key = ""
        self.balance = 0
        self.writer = writer
        self.closed = False
        self.stalled = False  # no avanzó en stall_timeout: ya no se le espera


class AsyncChatServer:
    """Estado compartido del chat. Sin locks: todo corre en el hilo del bucle."""

    def __init__(self, max_clients: int, max_backlog: int, stall_timeout: float = 0.5) -> None:
        self.max_clients = max_clients
        self.max_backlog = max_backlog
        self.stall_timeout = stall_timeout
        self.connections = 0
        self.reserved: set[str] = set()
        self.members: dict[str, Session] = {}

    # --- escritura -------------------------------------------------------

    def deliver(self, session: Session, data: bytes, behind: set[Session] | None = None) -> None:
        """Entrega sin bloquear; corta al cliente si su cola supera el límite.

        Si queda sobre ``HIGH_WATER`` (y no está marcado como colgado) se anota
        en ``behind`` para que el emisor lo espere al final del lote.
        """
        if session.closed:
            return
        transport = session.writer.transport
        queued = transport.get_write_buffer_size() + len(data)
        if queued > self.max_backlog:
            # Dejó de leer: se le desconecta en vez de acumular memoria sin fin.
            session.closed = True
            transport.abort()
            return
        session.writer.write(data)
        if queued > HIGH_WATER:
            if behind is not None and not session.stalled:
                behind.add(session)
        else:
            session.stalled = False

    async def wait_for_readers(self, behind: set[Session]) -> None:
        """Contrapresión hacia el emisor, pero sin dejar que un lector colgado lo frene.

        Espera a los destinatarios atrasados hasta ``stall_timeout`` en total;
        los que no drenaron a tiempo quedan marcados como colgados.
        """
        if not behind:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stall_timeout
        for member in behind:
            if member.closed:
                continue
            try:
                await asyncio.wait_for(member.writer.drain(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                member.stalled = True
            except (ConnectionError, OSError):
                pass

    def broadcast(self, sender: Session, data: bytes, behind: set[Session] | None = None) -> None:
        """Envía ``data`` a todos los miembros menos ``sender``."""
        for member in self.members.values():
            if member is not sender:
                self.deliver(member, data, behind)

    # --- ciclo de vida de una conexión --------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Saluda, identifica, fija el saldo y atiende el chat hasta ``:q`` o EOF."""
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        writer.transport.set_write_buffer_limits(high=HIGH_WATER)
        if self.connections >= self.max_clients:
            await self._refuse(writer)
            return
        self.connections += 1
        session = Session(writer)
        try:
            writer.write(_encode(WELCOME) + _encode(ASK_IDENTIFIER))
            if await self._identify(session, reader) and await self._fund(session, reader):
                self._join(session)
                await self._chat(session, reader)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self.connections -= 1
            self._leave(session)
            session.closed = True
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _refuse(self, writer: asyncio.StreamWriter) -> None:
        writer.write(_encode(SERVER_PREFIX + f"The chat is full ({self.max_clients} users). Please try again later."))
        with contextlib.suppress(ConnectionError, OSError):
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()

    async def _read_line(self, reader: asyncio.StreamReader) -> str | None:
        raw = await reader.readline()
        if not raw:
            return None
        return raw.rstrip(b"\r\n").decode(ENCODING, errors="replace").strip()

    async def _identify(self, session: Session, reader: asyncio.StreamReader) -> bool:
        while True:
            text = await self._read_line(reader)
            if text is None:
                return False
            if not _IDENTIFIER_RE.fullmatch(text):
                reply = "Invalid identifier: use 1-24 letters, digits, '_', '-' or '.'."
            elif text.casefold() in self.reserved:
                reply = f"The identifier {text} is already taken."
            else:
                session.name, session.key = text, text.casefold()
                self.reserved.add(session.key)
                session.writer.write(_encode(ASK_BALANCE))
                return True
            session.writer.write(_encode(SERVER_PREFIX + reply) + _encode(ASK_IDENTIFIER))

    async def _fund(self, session: Session, reader: asyncio.StreamReader) -> bool:
        while True:
            text = await self._read_line(reader)
            if text is None:
                return False
            if _AMOUNT_RE.fullmatch(text):
                session.balance = int(text)
                session.writer.write(
                    _encode(SERVER_PREFIX + f"The balance of {session.balance} has been set to your account.")
                )
                return True
            session.writer.write(
                _encode(SERVER_PREFIX + "The balance must be a non-negative whole number.") + _encode(ASK_BALANCE)
            )

    def _join(self, session: Session) -> None:
        line = SERVER_PREFIX + f"{session.name} connected!"
        print(line, flush=True)
        self.broadcast(session, _encode(line))
        self.members[session.key] = session

    def _leave(self, session: Session) -> None:
        if session.key:
            self.reserved.discard(session.key)
        if self.members.get(session.key) is session:
            del self.members[session.key]
            line = SERVER_PREFIX + f"{session.name} disconnected!"
            print(line, flush=True)
            self.broadcast(session, _encode(line))

    async def _chat(self, session: Session, reader: asyncio.StreamReader) -> None:
        """Procesa lotes: todas las líneas completas de un ``read`` antes de escribir."""
        pending = b""
        while not session.closed:
            data = await reader.read(65536)
            if not data:
                return
            *lines, pending = (pending + data).split(b"\n")
            if len(pending) > MAX_LINE_BYTES:
                return
            batch: list[bytes] = []  # líneas de chat hacia los demás, en orden
            replies: list[bytes] = []  # respuestas solo para el emisor
            behind: set[Session] = set()  # destinatarios atrasados tras este lote
            quit_now = False
            for raw in lines:
                text = raw.rstrip(b"\r").decode(ENCODING, errors="replace")
                if text.startswith(":") and is_command(text):
                    quit_now = self._command(session, text.strip(), batch, replies, behind)
                    if quit_now:
                        break
                elif text := clean_text(text):
                    batch.append(_encode(f"{session.name}: {text}"))
            if batch:
                self.broadcast(session, b"".join(batch), behind)
            if replies:
                session.writer.write(b"".join(replies))
            if quit_now:
                session.writer.write(_encode(GOODBYE))
                self._leave(session)
                await session.writer.drain()
                return
            # Contrapresión: si el propio cliente no lee sus respuestas, o los
            # demás van atrasados, se deja de leer lo que envía por un momento.
            await session.writer.drain()
            await self.wait_for_readers(behind)

    def _command(
        self, session: Session, text: str, batch: list[bytes], replies: list[bytes], behind: set[Session]
    ) -> bool:
        """Ejecuta un comando; devuelve ``True`` si el cliente pidió salir."""
        if text == ":q":
            return True
        if text == ":funds":
            replies.append(_encode(SERVER_PREFIX + f"You have {session.balance} dollars."))
            return False
        match = _TRANSFER_RE.fullmatch(text)
        if match is None:
            replies.append(_encode(SERVER_PREFIX + f"Unknown command '{text.split()[0]}'."))
            return False
        target = self.members.get(match.group(1).casefold())
        amount_text = match.group(2)
        if target is None:
            replies.append(_encode(SERVER_PREFIX + f"There is no user called {match.group(1)}."))
        elif target is session:
            replies.append(_encode(SERVER_PREFIX + "You cannot transfer money to yourself."))
        elif not _AMOUNT_RE.fullmatch(amount_text) or int(amount_text) == 0:
            replies.append(_encode(SERVER_PREFIX + "The amount must be a positive whole number."))
        elif int(amount_text) > session.balance:
            replies.append(_encode(INSUFFICIENT_FUNDS))
        else:
            amount = int(amount_text)
            session.balance -= amount
            target.balance += amount
            # El aviso al receptor va después de las líneas de chat previas del lote.
            if batch:
                self.broadcast(session, b"".join(batch), behind)
                batch.clear()
            self.deliver(target, _encode(SERVER_PREFIX + f"{session.name} transferred you {amount} dollars."), behind)
            replies.append(
                _encode(
                    SERVER_PREFIX
                    + f"You transferred {amount} dollars to {target.name}. You have {session.balance} dollars."
                )
            )
        return False


async def serve(host: str, port: int, max_clients: int, max_backlog: int, stall_timeout: float) -> None:
    """Escucha hasta recibir SIGTERM/SIGINT."""
    chat = AsyncChatServer(max_clients, max_backlog, stall_timeout)
    server = await asyncio.start_server(chat.handle, host, port, backlog=min(max(max_clients, 128), 4096))
    bound = server.sockets[0].getsockname()
    print(f"Listening on {bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Punto de entrada de línea de comandos."""
    parser = argparse.ArgumentParser(description="asyncio reference chat server (benchmark)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--max-clients", type=int, default=256)
    parser.add_argument("--max-backlog", type=int, default=1 << 20, help="bytes queued per client before cutting it")
    parser.add_argument(
        "--stall-timeout", type=float, default=0.5, help="seconds to wait for a lagging reader before giving up on it"
    )
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.host, args.port, args.max_clients, args.max_backlog, args.stall_timeout))
    except OSError as exc:
        print(f"Cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
