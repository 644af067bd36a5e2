"""Servidor de chat con un hilo por conexión (requisito 8 del enunciado).

La vida de una conexión son pocos pasos con nombre, en ``Session.run``:
saludar, pedir identificador, pedir saldo, unirse, conversar y despedirse.
El servidor es un objeto sin estado global: se puede iniciar y detener muchas
veces en el mismo proceso (las pruebas y los notebooks lo hacen).

Uso::

    python -m chatlib.server --host 127.0.0.1 --port 5000
"""

from __future__ import annotations

import argparse
import logging
import selectors
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from types import FrameType

from chatlib import protocol as proto
from chatlib.bank import Bank, BankError, InsufficientFunds, UnknownAccount
from chatlib.outbox import DEFAULT_QUEUE_LIMIT, Flusher, Outbox

log = logging.getLogger(__name__)

Address = tuple[str, int]
RECV_SIZE = 65536
BACKPRESSURE_WAIT = 0.2
SHUTDOWN_NOTICE = proto.server_line("The server is shutting down. Goodbye!")
HANDSHAKE_TIMEOUT_NOTICE = proto.server_line("You took too long to answer. Goodbye!")


def _encode(lines: Iterable[str]) -> bytes:
    """Codifica varias líneas de una vez: un solo ``send`` por lote."""
    return "".join(line + "\n" for line in lines).encode(proto.ENCODING)


class Batch:
    """Lo que un lote de líneas recibidas produce, para enviarlo de una sola vez.

    Procesar todas las líneas completas de un ``recv`` y luego hacer un envío
    por destinatario (en lugar de uno por línea) es lo que mantiene al servidor
    rápido bajo ráfagas. Cada línea se formatea y codifica una sola vez.
    """

    def __init__(self, sender: Session) -> None:
        self.sender = sender
        self._ops: list[tuple[Session | None, str]] = []

    def reply(self, *lines: str) -> None:
        """Líneas solo para quien envió el lote."""
        self._ops.extend((self.sender, line) for line in lines)

    def to(self, target: Session, line: str) -> None:
        """Una línea para un usuario en particular."""
        self._ops.append((target, line))

    def broadcast(self, line: str) -> None:
        """Una línea para todos los usuarios unidos, excepto quien la envía."""
        self._ops.append((None, line))

    def flush(self, members: tuple[Session, ...]) -> None:
        """Entrega el lote; nunca con un lock compartido tomado.

        Primero se entrega a todos y solo después, si algún destinatario quedó
        con mucha cola, el emisor espera (a lo más ``BACKPRESSURE_WAIT`` en
        total) antes de leer más: así nadie recibe tarde este lote por culpa
        de otro, y quien inunda el chat es frenado por TCP.
        """
        if not self._ops:
            return
        congested: list[Session] = []
        targeted = {target for target, _ in self._ops if target is not None}
        if any(target is None for target, _ in self._ops):
            common = _encode(line for target, line in self._ops if target is None)
            for member in members:
                if member is not self.sender and member not in targeted:
                    member.deliver(common)
                    if member.outbox.congested:
                        congested.append(member)
        for target in targeted:
            lines = (
                line
                for who, line in self._ops
                if who is target or (who is None and target is not self.sender)
            )
            target.deliver(_encode(lines))
            if target.outbox.congested:
                congested.append(target)
        self._ops.clear()
        deadline = time.monotonic() + BACKPRESSURE_WAIT
        for member in congested:
            member.outbox.wait_for_room(max(0.0, deadline - time.monotonic()))


class Session:
    """Una conexión y su hilo: el estado de un cliente desde que llega hasta que se va."""

    def __init__(self, server: ChatServer, sock: socket.socket, peer: Address) -> None:
        self.server = server
        self.sock = sock
        self.peer = peer
        self.identifier: str | None = None
        self.funded = False
        self.balance_line = ""
        self.joined = False
        self.outbox = Outbox(sock, server.flusher, server.queue_limit, self._overflowed)
        self._framer = proto.LineBuffer()
        self._inbox: deque[str | proto.ProtocolError] = deque()
        self.thread = threading.Thread(
            target=self.run, name=f"chatlib-client-{peer[0]}:{peer[1]}", daemon=True
        )

    def run(self) -> None:
        """Cuerpo del hilo: saludar, identificar, fondear, conversar, despedirse."""
        reason = "connection closed"
        try:
            self.send_lines(proto.WELCOME)
            self.sock.settimeout(self.server.handshake_timeout)
            if self.identify() and self.fund():
                self.sock.settimeout(None)
                self.join()
                reason = self.chat()
        except TimeoutError:
            self.send_lines(HANDSHAKE_TIMEOUT_NOTICE, last=True)
            reason = "handshake timed out"
        except OSError as exc:
            reason = f"connection error ({exc.strerror or exc})"
        except Exception:
            log.exception("unexpected error in session %s", self.identifier or self.peer)
            reason = "internal error"
        finally:
            self.leave(reason)

    def send_lines(self, *lines: str, last: bool = False) -> None:
        """Envía líneas solo a este cliente; ``last`` sella su buffer (despedidas)."""
        self.outbox.push(_encode(lines), last=last)

    def deliver(self, data: bytes) -> None:
        """Entrega bytes ya codificados (camino rápido o cola acotada)."""
        self.outbox.push(data)

    def _overflowed(self, outbox: Outbox) -> None:
        """El cliente dejó de leer: se le corta para que su hilo lo despida."""
        self._shutdown_socket()

    def _shutdown_socket(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def ask(self, question: str) -> str | None:
        """Hace una pregunta del saludo y retorna la respuesta; ``None`` si el cliente se fue.

        Los errores de encuadre (línea muy larga, UTF-8 inválido) se explican y
        se vuelve a preguntar.
        """
        while True:
            self.send_lines(question)
            while not self._inbox:
                if not self._receive():
                    return None
            line = self._inbox.popleft()
            if isinstance(line, str):
                return line
            self.send_lines(proto.server_line(str(line)))

    def _receive(self) -> bool:
        """Un ``recv`` bloqueante; agrega lo recibido a la bandeja. ``False`` en EOF."""
        data = self.sock.recv(RECV_SIZE)
        if not data:
            return False
        self._inbox.extend(self._framer.feed(data))
        return True

    def identify(self) -> bool:
        """Pregunta el identificador hasta que sea válido y único."""
        while True:
            line = self.ask(proto.ASK_IDENTIFIER)
            if line is None:
                return False
            if not line.strip():
                # El enunciado sugiere getpeername(): "host:puerto" es único.
                host, port = self.sock.getpeername()[:2]
                candidate = f"{host}:{port}"
            else:
                try:
                    candidate = proto.validate_identifier(line)
                except proto.ProtocolError as exc:
                    self.send_lines(proto.server_line(str(exc)))
                    continue
            if self.server.reserve_identifier(self, candidate):
                self.identifier = candidate
                return True
            self.send_lines(
                proto.server_line(f"The identifier '{candidate}' is already in use. Choose another.")
            )

    def fund(self) -> bool:
        """Pregunta el saldo inicial hasta recibir un entero válido y abre la cuenta."""
        while True:
            line = self.ask(proto.ASK_BALANCE)
            if line is None:
                return False
            try:
                balance = proto.parse_amount(line, allow_zero=True, what="balance")
            except proto.ProtocolError as exc:
                self.send_lines(proto.server_line(str(exc)))
                continue
            assert self.identifier is not None
            self.server.bank.open(self.identifier, balance)
            self.funded = True
            self.balance_line = proto.balance_set_line(balance)
            return True

    def join(self) -> None:
        """Hace visible al usuario: consola, lista de miembros y aviso a los demás.

        La confirmación del saldo queda retenida hasta que el usuario ya es
        miembro: cuando el cliente la lee, los demás ya pueden escribirle o
        transferirle, y lo que le envíen mientras tanto llega después de ella.
        """
        assert self.identifier is not None
        self.outbox.pause()
        self.send_lines(self.balance_line)
        self.server.add_member(self)
        line = proto.connected_line(self.identifier)
        self.server.console(line)
        self.outbox.resume()
        batch = Batch(self)
        batch.broadcast(line)
        batch.flush(self.server.members)

    def chat(self) -> str:
        """Bucle principal: procesa por lotes todo lo que trae cada ``recv``."""
        while True:
            if not self._inbox and not self._receive():
                return "connection closed by client"
            batch = Batch(self)
            quitting = False
            while self._inbox and not quitting:
                item = self._inbox.popleft()
                if isinstance(item, proto.ProtocolError):
                    batch.reply(proto.server_line(str(item)))
                    continue
                if proto.might_be_command(item):
                    command = proto.parse_line(item)
                    quitting = HANDLERS[command.name](self, command, batch)
                else:
                    self.relay(item, batch)
            batch.flush(self.server.members)
            if quitting:
                self._inbox.clear()
                return "quit"

    def on_chat(self, command: proto.Command, batch: Batch) -> bool:
        """Mensaje público que empieza como un emoji (``:smile hola``)."""
        self.relay(command.args[0], batch)
        return False

    def relay(self, line: str, batch: Batch) -> None:
        """Mensaje público: saneado, con emojis, a todos los demás."""
        text = proto.render_emojis(proto.sanitize(line)).strip()
        if text:
            assert self.identifier is not None
            batch.broadcast(proto.chat_line(self.identifier, text))

    def on_error(self, command: proto.Command, batch: Batch) -> bool:
        """Comando desconocido o mal formado: se explica solo a quien lo envió."""
        batch.reply(proto.server_line(proto.sanitize(command.error)))
        return False

    def on_quit(self, command: proto.Command, batch: Batch) -> bool:
        """``:q``: la despedida se envía al cerrar, después del resto del lote."""
        return True

    def on_private(self, command: proto.Command, batch: Batch) -> bool:
        """``:p - <id> - <mensaje>``: solo lo ve el destinatario."""
        target_name, text = command.args
        target = self.server.find_member(target_name)
        if target is None:
            batch.reply(self._no_such_user(target_name))
            return False
        text = proto.render_emojis(proto.sanitize(text)).strip()
        assert self.identifier is not None
        batch.to(target, proto.private_line(self.identifier, text))
        return False

    def on_users(self, command: proto.Command, batch: Batch) -> bool:
        """``:u``: lista de usuarios conectados, en orden de llegada."""
        names = [m.identifier for m in self.server.members if m.identifier is not None]
        batch.reply(proto.users_line(names))
        return False

    def on_funds(self, command: proto.Command, batch: Batch) -> bool:
        """``:funds``: saldo actual, solo para quien pregunta."""
        assert self.identifier is not None
        batch.reply(proto.funds_line(self.server.bank.balance(self.identifier)))
        return False

    def on_transfer(self, command: proto.Command, batch: Batch) -> bool:
        """``:t - <id> - <monto>``: transferencia atómica en el banco."""
        target_name, amount_text = command.args
        assert self.identifier is not None
        try:
            amount = proto.parse_amount(amount_text, allow_zero=False)
        except proto.ProtocolError as exc:
            batch.reply(proto.server_line(str(exc)))
            return False
        if proto.identifier_key(target_name) == proto.identifier_key(self.identifier):
            batch.reply(proto.server_line("You cannot transfer money to yourself."))
            return False
        target = self.server.find_member(target_name)
        if target is None or target.identifier is None:
            batch.reply(self._no_such_user(target_name))
            return False
        try:
            remaining = self.server.bank.transfer(self.identifier, target.identifier, amount)
        except InsufficientFunds:
            batch.reply(proto.INSUFFICIENT_FUNDS)
        except UnknownAccount:
            batch.reply(self._no_such_user(target_name))
        except BankError as exc:
            batch.reply(proto.server_line(f"The transfer was rejected: {exc}."))
        else:
            batch.reply(proto.transfer_sent_line(amount, target.identifier, remaining))
            batch.to(target, proto.transfer_received_line(self.identifier, amount))
        return False

    def on_help(self, command: proto.Command, batch: Batch) -> bool:
        """``:h``: la ayuda se genera desde la tabla de comandos."""
        batch.reply(*proto.help_lines())
        return False

    @staticmethod
    def _no_such_user(name: str) -> str:
        return proto.server_line(f"There is no connected user called '{proto.sanitize(name)}'.")

    def leave(self, reason: str) -> None:
        """Despedida y limpieza; se ejecuta siempre, termine como termine la conexión."""
        was_member = self.server.remove_session(self)
        if reason == "quit":
            self.send_lines(proto.GOODBYE, last=True)
        if self.funded and self.identifier is not None:
            balance = self.server.bank.close(self.identifier)
            log.debug("%s's account closed with %d dollars", self.identifier, balance)
        if was_member and self.identifier is not None:
            line = proto.disconnected_line(self.identifier)
            self.server.console(line)
            if self.outbox.overflowed:
                log.warning("%s was disconnected: %s", self.identifier, self.outbox.closed_reason)
            else:
                log.debug("%s disconnected: %s", self.identifier, self.outbox.closed_reason or reason)
            if not self.server.stopping:
                batch = Batch(self)
                batch.broadcast(line)
                batch.flush(self.server.members)
        self._close_gracefully()

    def _close_gracefully(self) -> None:
        """Cierre ordenado: vaciar la cola, enviar FIN y cerrar sin perder la despedida."""
        self.outbox.wait_drained(0.5)
        self.outbox.close()
        try:
            self.sock.shutdown(socket.SHUT_WR)
            # Leer lo que quede evita un RST que podría borrar la despedida en el cliente.
            self.sock.settimeout(0.2)
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline and self.sock.recv(RECV_SIZE):
                pass
        except OSError:
            pass
        finally:
            self.sock.close()


Handler = Callable[[Session, proto.Command, Batch], bool]
HANDLERS: dict[str, Handler] = {
    "chat": Session.on_chat,
    "error": Session.on_error,
    "q": Session.on_quit,
    "p": Session.on_private,
    "u": Session.on_users,
    "funds": Session.on_funds,
    "t": Session.on_transfer,
    "h": Session.on_help,
}
"""Nombre de comando → manejador. Debe cubrir exactamente ``protocol.COMMANDS`` más
``chat`` y ``error`` (las otras dos clases de línea de ``parse_line``)."""


def _check_handlers() -> None:
    """Falla al importar si la tabla del protocolo y la del servidor no coinciden."""
    expected = set(proto.COMMANDS) | {"chat", "error"}
    if set(HANDLERS) != expected:
        raise RuntimeError(
            f"command handlers {sorted(HANDLERS)} do not match the protocol {sorted(expected)}"
        )


_check_handlers()


class ChatServer:
    """Acepta conexiones y lanza un hilo ``Session`` por cada una.

    ``start()`` abre el socket, lanza el bucle de aceptación en un hilo y
    retorna cuando ya se puede conectar; ``stop()`` avisa a todos, cierra cada
    socket y espera a cada hilo.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 5000,
        *,
        max_clients: int = 256,
        bank: Bank | None = None,
        console: Callable[[str], None] | None = print,
        handshake_timeout: float = 120.0,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
    ) -> None:
        self.host = host
        self.port = port
        self.max_clients = max_clients
        self.bank = bank if bank is not None else Bank()
        self._console = console
        self.handshake_timeout = handshake_timeout
        self.queue_limit = queue_limit
        self.console_lines: list[str] = []
        self.flusher = Flusher()
        self.stopping = False
        self._lock = threading.Lock()
        self._sessions: set[Session] = set()
        self._names: dict[str, Session] = {}
        self.members: tuple[Session, ...] = ()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._started = False

    @property
    def address(self) -> Address:
        """Dirección real en que escucha (útil con ``port=0``)."""
        if self._listener is None:
            raise RuntimeError("the server is not listening")
        host, port = self._listener.getsockname()[:2]
        return host, port

    def console(self, line: str) -> None:
        """Escribe en la consola del servidor y guarda la línea (para notebooks)."""
        self.console_lines.append(line)
        if self._console is not None:
            self._console(line)

    def start(self) -> Address:
        """Escucha y lanza el bucle de aceptación; retorna la dirección."""
        if self._started:
            raise RuntimeError("a ChatServer can only be started once")
        self._started = True
        listener = socket.create_server((self.host, self.port), backlog=min(self.max_clients, 4096))
        self._listener = listener
        self.flusher.start()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="chatlib-accept", daemon=True)
        self._accept_thread.start()
        return self.address

    def __enter__(self) -> ChatServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        """Bucle de aceptación; un ``socketpair`` lo despierta al detener."""
        assert self._listener is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self.stopping:
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r:
                        return
                    self._accept_one()

    def _accept_one(self) -> None:
        assert self._listener is not None
        try:
            sock, peer = self._listener.accept()
        except OSError as exc:
            # EMFILE y similares: se registra y se sigue atendiendo a los demás.
            log.warning("accept failed: %s", exc)
            time.sleep(0.05)
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            full = len(self._sessions) >= self.max_clients
            if not full:
                session = Session(self, sock, peer[:2])
                self._sessions.add(session)
        if full:
            self._refuse(sock)
            return
        session.thread.start()

    def _refuse(self, sock: socket.socket) -> None:
        """Chat lleno: una línea clara y se cierra, sin crear un hilo."""
        notice = proto.server_line(f"The chat is full ({self.max_clients} users). Please try again later.")
        try:
            sock.send((notice + "\n").encode(proto.ENCODING), socket.MSG_DONTWAIT)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            sock.close()
        log.info("refused a connection: the chat is full")

    def reserve_identifier(self, session: Session, identifier: str) -> bool:
        """Reserva un identificador (sin distinguir mayúsculas); ``False`` si está ocupado."""
        key = proto.identifier_key(identifier)
        with self._lock:
            if key in self._names:
                return False
            self._names[key] = session
            return True

    def add_member(self, session: Session) -> None:
        """Agrega a la lista de miembros (copia nueva: los lectores no toman lock)."""
        with self._lock:
            session.joined = True
            self.members = self.members + (session,)

    def find_member(self, identifier: str) -> Session | None:
        """Busca un usuario unido por identificador."""
        with self._lock:
            session = self._names.get(proto.identifier_key(identifier))
        return session if session is not None and session.joined else None

    def remove_session(self, session: Session) -> bool:
        """Olvida la sesión y libera su identificador; ``True`` si era miembro."""
        with self._lock:
            self._sessions.discard(session)
            if session.identifier is not None:
                key = proto.identifier_key(session.identifier)
                if self._names.get(key) is session:
                    del self._names[key]
            was_member = session in self.members
            if was_member:
                self.members = tuple(m for m in self.members if m is not session)
            return was_member

    @property
    def session_count(self) -> int:
        """Conexiones abiertas (incluye las que aún están en el saludo)."""
        with self._lock:
            return len(self._sessions)

    def stop(self, timeout: float = 1.5) -> None:
        """Avisa a todos, cierra cada socket y espera cada hilo (a lo más ~``timeout``)."""
        if not self._started or self.stopping:
            return
        self.stopping = True
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass
        deadline = time.monotonic() + timeout
        if self._accept_thread is not None:
            self._accept_thread.join(timeout)
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.send_lines(SHUTDOWN_NOTICE, last=True)
            session._shutdown_socket()
        for session in sessions:
            if session.thread.is_alive():
                session.thread.join(max(0.0, deadline - time.monotonic()))
        self.flusher.stop(max(0.1, deadline - time.monotonic()))
        if self._listener is not None:
            self._listener.close()
        self._wake_r.close()
        self._wake_w.close()


def build_parser() -> argparse.ArgumentParser:
    """Opciones de línea de comandos del servidor."""
    parser = argparse.ArgumentParser(
        prog="python -m chatlib.server",
        description="Threaded TCP chat server with a small bank.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="TCP port; 0 picks a free one (default 5000)")
    parser.add_argument("--max-clients", type=int, default=256, help="simultaneous connections (default 256)")
    parser.add_argument(
        "--handshake-timeout",
        type=float,
        default=120.0,
        help="seconds a new client has to answer the identifier and balance questions",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level for diagnostics on stderr")
    parser.add_argument(
        "--unsafe-bank",
        nargs="?",
        type=float,
        const=0.01,
        default=None,
        metavar="WINDOW",
        help="race-condition lab only: transfers WITHOUT a lock, sleeping WINDOW seconds "
        "(default 0.01) between each read and write so concurrent transfers lose money",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Punto de entrada de ``python -m chatlib.server``."""
    args = build_parser().parse_args(argv)
    if args.max_clients < 1:
        build_parser().error("--max-clients must be at least 1")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    bank: Bank | None = None
    if args.unsafe_bank is not None:
        if args.unsafe_bank < 0:
            build_parser().error("--unsafe-bank WINDOW must be >= 0")
        # Import tardío: el servidor normal no carga el laboratorio de carreras.
        from chatlib.lab import unsafe_bank

        bank = unsafe_bank(args.unsafe_bank)
        print(
            "!" * 72 + "\n!!! WARNING: --unsafe-bank: transfers run WITHOUT A LOCK "
            f"(race window {args.unsafe_bank:g} s)."
            "\n!!! Concurrent transfers WILL lose updates: money appears and vanishes."
            "\n!!! Race-condition lab only. Never trust the balances of this server.\n" + "!" * 72,
            flush=True,
        )
    server = ChatServer(
        args.host,
        args.port,
        max_clients=args.max_clients,
        bank=bank,
        handshake_timeout=args.handshake_timeout,
        console=lambda line: print(line, flush=True),
    )
    # Los manejadores van antes de escuchar: una señal temprana también cierra en orden.
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        host, port = server.start()
    except OSError as exc:
        print(f"Cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"Listening on {host}:{port} (Ctrl-C to stop)", flush=True)
    while not done.wait(0.5):
        pass
    print("Shutting down...", flush=True)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
