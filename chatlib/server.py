"""Servidor de chat con un hilo por conexión (requisito 8 del enunciado).

La vida de una conexión son pocos pasos con nombre, en ``Session.run``:
saludar, pedir identificador, pedir saldo, unirse, conversar y despedirse.
El servidor es un objeto sin estado global: se puede iniciar y detener muchas
veces en el mismo proceso (las pruebas y los notebooks lo hacen).

Cada socket aceptado es no bloqueante durante toda su vida: el hilo de la
sesión espera datos con ``poll`` (o ``select`` donde no existe, en Windows)
sobre su único socket y con un plazo, y todo envío es un ``send`` que nunca
espera. Así funciona igual en Windows, macOS y Linux, y ``stop()`` termina a
tiempo haga lo que haga cada cliente.

Uso::

    python -m chatlib.server --host 127.0.0.1 --port 5000
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import select
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from types import FrameType

from chatlib import protocol as proto
from chatlib.bank import Bank, BankError, InsufficientFunds, UnknownAccount
from chatlib.console import ConsoleWriter, RateLimitedLog, write_line, write_lines
from chatlib.outbox import DEFAULT_QUEUE_LIMIT, Flusher, Outbox

log = logging.getLogger(__name__)

Address = tuple[str, int]
RECV_SIZE = 65536
STOP_TIMEOUT = 1.5
"""Segundos que ``stop()`` da a los clientes para recibir lo pendiente y el aviso de cierre."""
CLOSE_LINGER = 0.5
"""Segundos que una sesión que termina espera para vaciar su cola y leer el FIN del cliente."""
SELECT_CAP = 0.5
"""Sin ``poll`` (Windows) la espera se corta cada tanto para ver si la sesión fue cortada."""
ACCEPT_BACKOFF = 0.05
DEFAULT_MAX_HANDSHAKES = 64
DEFAULT_MAX_HANDSHAKES_PER_IP = 16
DEFAULT_CONSOLE_HISTORY = 1000
SWITCH_INTERVAL = 0.02
"""Segundos que un hilo puede tener el GIL mientras otros lo esperan (CPython usa 0,005).

Cada hilo que espera el GIL despierta al vencer ese plazo para pedirlo: con
cien clientes que envían a la vez, son cien hilos despertando cada 5 ms aunque
el que lo tiene vaya a soltarlo solo en su próximo ``send`` o ``recv``. Los
hilos del servidor sueltan el GIL en cada llamada de red, así que un plazo
mayor casi no retrasa a nadie y ahorra esos despertares (bench/README.md).
Lo fija ``main`` para su proceso; un ``ChatServer`` dentro de otro programa no lo toca.
"""
QUIT_LINE = proto.COMMANDS["q"].usage
"""``:q`` tal cual: el chat lo reconoce sin analizar la línea (ver ``Session.chat``)."""
NEWLINE_HINT_AFTER = 2.0
SHUTDOWN_NOTICE = proto.server_line("The server is shutting down. Goodbye!")
HANDSHAKE_TIMEOUT_NOTICE = proto.server_line("You took too long to answer. Goodbye!")
NEWLINE_NOTICE = proto.server_line("Lines must end with a newline (\\n).")
EMPTY_PRIVATE_NOTICE = proto.server_line("Your private message is empty and was not sent.")
BUSY_ADDRESS_NOTICE = proto.server_line(
    "Too many connections from your address are still joining. Please try again later."
)
BUSY_NOTICE = proto.server_line("Too many people are joining right now. Please try again later.")
FAILED_NOTICE = proto.server_line("The server could not start your session. Please try again later.")


def full_notice(max_clients: int) -> str:
    """Aviso de chat lleno."""
    return proto.server_line(f"The chat is full ({max_clients} users). Please try again later.")


def _encode(lines: list[str] | tuple[str, ...]) -> bytes:
    """Codifica varias líneas de una vez: un solo ``send`` por lote."""
    return ("\n".join(lines) + "\n").encode(proto.ENCODING)


# Las líneas fijas del saludo y la despedida, codificadas una sola vez.
_WELCOME = _encode((proto.WELCOME,))
_ASK_IDENTIFIER = _encode((proto.ASK_IDENTIFIER,))
_ASK_BALANCE = _encode((proto.ASK_BALANCE,))
_GOODBYE = _encode((proto.GOODBYE,))


def _cut_when_overflowed(sock: socket.socket) -> Callable[[Outbox], None]:
    """Lo que hace el ``Outbox`` de un cliente que dejó de leer: cortarlo (su hilo despierta y lo despide).

    Una función sobre el socket y no un método de la sesión: así la sesión y su
    ``Outbox`` no forman un ciclo, y se liberan apenas termina su hilo, sin esperar al GC.
    """

    def cut(outbox: Outbox) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    return cut


class ServerStopping(Exception):
    """El servidor se está deteniendo: la sesión termina sin esperar más al cliente."""


class Waiter:
    """Espera a que un socket tenga algo que leer, con plazo, sin crear descriptores.

    Con ``select.poll`` (Linux, macOS) no importa el número del descriptor (hay
    más de 1024 con mil clientes); sin él (Windows) se usa ``select.select``
    con solo estos dos sockets. ``wake`` es el despertador del servidor: un
    ``socketpair`` compartido en el que ``stop()`` escribe un byte que nadie lee,
    así que despierta a todas las sesiones a la vez y para siempre.
    """

    def __init__(self, sock: socket.socket, wake: socket.socket | None) -> None:
        self._sock = sock
        self._wake = wake
        self._poll = select.poll() if hasattr(select, "poll") else None
        if self._poll is not None:
            self._poll.register(sock, select.POLLIN)
            if wake is not None:
                self._poll.register(wake, select.POLLIN)

    def ignore_wake(self) -> None:
        """Desde aquí solo se espera al socket (el cierre ordenado, ya con el despertador sonando)."""
        if self._poll is not None and self._wake is not None:
            self._poll.unregister(self._wake)
        self._wake = None

    def wait(self, timeout: float | None) -> bool:
        """``True`` si hay algo que leer (o sonó el despertador); ``False`` al vencer el plazo."""
        if self._poll is not None:
            ms = -1 if timeout is None else max(0, math.ceil(timeout * 1000))
            return bool(self._poll.poll(ms))
        fds = [self._sock] if self._wake is None else [self._sock, self._wake]
        cap = SELECT_CAP if timeout is None else min(timeout, SELECT_CAP)
        ready, _, _ = select.select(fds, [], [], max(0.0, cap))
        return bool(ready)


class Batch:
    """Lo que un lote de líneas recibidas produce, para enviarlo de una sola vez.

    Procesar todas las líneas completas de un ``recv`` y luego hacer un envío
    por destinatario (en lugar de uno por línea) es lo que mantiene al servidor
    rápido bajo ráfagas. Cada línea se formatea y codifica una sola vez.
    """

    def __init__(self, sender: Session) -> None:
        self.sender = sender
        # Las respuestas van aparte: quien envía no recibe las difusiones, así
        # que su orden respecto de ellas no importa (y son el caso de una ráfaga de :t).
        self._replies: list[str] = []
        self._ops: list[tuple[Session | None, str]] = []

    def reply(self, *lines: str) -> None:
        """Líneas solo para quien envió el lote."""
        self._replies.extend(lines)

    def to(self, target: Session, line: str) -> None:
        """Una línea para un usuario en particular."""
        if target is self.sender:
            self._replies.append(line)
        else:
            self._ops.append((target, line))

    def broadcast(self, line: str) -> None:
        """Una línea para todos los usuarios unidos, excepto quien la envía."""
        self._ops.append((None, line))

    def flush(self, members: tuple[Session, ...]) -> None:
        """Entrega el lote; nunca con un lock compartido tomado.

        Primero se entrega a todos y solo después, si algún destinatario quedó
        con mucha cola y el emisor ya tiene más que decir (líneas sin procesar
        o bytes en su socket), el emisor espera, mientras ese destinatario siga
        avanzando, antes de leer más: así nadie recibe tarde este lote por
        culpa de otro, y quien inunda el chat es frenado por TCP en vez de
        hacer cortar a quien lee más lento. Quien no tiene nada más que decir
        no espera: su próximo mensaje, si llega, no se atrasa por un lector
        detenido (la espera se decide de nuevo con cada lote).
        """
        if not self._ops and not self._replies:
            return
        congested: list[Session] = []
        sender = self.sender
        if self._replies:
            sender.deliver(_encode(self._replies))
            self._replies.clear()
            if sender.outbox.congested:
                congested.append(sender)
        # Una sola pasada por las operaciones: cada destinatario particular
        # recibe, en orden, sus líneas y las difusiones (nunca es el emisor).
        common: list[str] = []
        personal: dict[Session, list[str]] = {}
        for who, line in self._ops:
            if who is None:
                common.append(line)
                for lines in personal.values():
                    lines.append(line)
            elif who in personal:
                personal[who].append(line)
            else:
                personal[who] = [*common, line]
        if common:
            data = _encode(common)
            for member in members:
                # Un lote sin líneas particulares (el caso común) no consulta el diccionario.
                if member is sender or (personal and member in personal):
                    continue
                outbox = member.outbox
                outbox.push(data)
                # ``idle`` tras el push: todo salió, no hay cola que mirar (el caso común).
                if not outbox.idle and outbox.congested:
                    congested.append(member)
        for target, lines in personal.items():
            target.deliver(_encode(lines))
            if target.outbox.congested:
                congested.append(target)
        self._ops.clear()
        if not congested or not sender.has_input():
            return
        server = sender.server
        for member in congested:
            member.outbox.wait_for_room(lambda: server.stopping)


class Session:
    """Una conexión y su hilo: el estado de un cliente desde que llega hasta que se va."""

    def __init__(self, server: ChatServer, sock: socket.socket, peer: Address, accepted_at: float) -> None:
        self.server = server
        self.sock = sock
        self.peer = peer
        # El plazo del saludo es absoluto desde accept(): goteando bytes no se alarga.
        self.deadline = accepted_at + server.handshake_timeout
        self.identifier: str | None = None
        # ``identifier_key(identifier)``: con ella se buscan los nombres, sin distinguir mayúsculas.
        self.key = ""
        # Clave de la cuenta en el banco: propia de esta sesión mientras alguien
        # pueda referirse a ella (ver ChatServer.open_account).
        self.account: str | None = None
        self.balance_line = ""
        self._greeting = b""
        self.joined = False
        self.in_handshake = False
        self.has_turn = False
        self.outbox = Outbox(sock, server.flusher, server.queue_limit, _cut_when_overflowed(sock))
        self._framer = proto.LineBuffer()
        self._inbox: deque[str | proto.ProtocolError] = deque()
        self._waiter = Waiter(sock, server.wake_socket)
        self._partial_since: float | None = None
        self._hinted = False
        self._tokens = float(server.max_line_rate)
        self._tokens_at = accepted_at
        self._bank_hold: AbstractContextManager[None] | None = None
        self.thread = threading.Thread(
            target=self.run, name=f"chatlib-client-{peer[0]}:{peer[1]}", daemon=True
        )

    def run(self) -> None:
        """Cuerpo del hilo: saludar, identificar, pedir el saldo, conversar, despedirse."""
        reason = "connection closed"
        try:
            if self.server.wait_turn(self, block=False):
                # Con cupo libre el saludo sale junto con la primera pregunta: un ``send``.
                self._greeting = _WELCOME
            else:
                self.outbox.push(_WELCOME)
                self.server.wait_turn(self)
            if self.identify() and self.fund():
                self.server.end_handshake(self)
                reason = self.chat() if self.join() else "the chat is full"
        except TimeoutError:
            self.send_lines(HANDSHAKE_TIMEOUT_NOTICE, last=True)
            reason = "handshake timed out"
        except ServerStopping:
            reason = "server stopping"
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

    def has_input(self) -> bool:
        """¿Hay líneas sin procesar o bytes por leer en el socket? (sin esperar)."""
        return bool(self._inbox) or self._waiter.wait(0)

    def deliver(self, data: bytes) -> None:
        """Entrega bytes ya codificados (camino rápido o cola acotada)."""
        self.outbox.push(data)

    def ask(self, question: bytes) -> str | None:
        """Hace una pregunta del saludo (ya codificada) y retorna la respuesta; ``None`` si el cliente se fue.

        Los errores de encuadre (línea muy larga, UTF-8 inválido) se explican y
        se vuelve a preguntar. Todo el saludo vence en ``self.deadline``.
        """
        while True:
            # Sin saludo pendiente, ``b"" + question`` es ``question`` mismo: no se copia.
            self.outbox.push(self._greeting + question)
            self._greeting = b""
            while not self._inbox:
                if not self._receive(self.deadline):
                    return None
            line = self._inbox.popleft()
            if isinstance(line, str):
                return line
            self.send_lines(proto.server_line(str(line)))

    def _receive(self, deadline: float | None) -> bool:
        """Espera datos (a lo más hasta ``deadline``) y los agrega a la bandeja; ``False`` en EOF.

        Lanza ``TimeoutError`` al vencer el plazo y ``ServerStopping`` si el
        servidor se detiene. Si una línea sin terminar lleva
        ``newline_hint_after`` segundos esperando su ``\\n``, se avisa una vez.

        Primero se intenta el ``recv`` sin esperar: con el servidor ocupado la
        respuesta del cliente suele haber llegado ya (dos de cada tres veces en
        las altas del benchmark), y así se ahorra el ``poll`` y una vuelta por
        el GIL. Solo si no hay nada se espera con ``poll``.
        """
        ready = True
        while True:
            if self.server.stopping:
                raise ServerStopping
            if self.outbox.closed:
                return False
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise TimeoutError
            until = deadline
            if self._partial_since is not None and not self._hinted:
                hint_at = self._partial_since + self.server.newline_hint_after
                if now >= hint_at:
                    self._hinted = True
                    self.send_lines(NEWLINE_NOTICE)
                    continue
                until = hint_at if until is None else min(until, hint_at)
            if not ready and not self._waiter.wait(None if until is None else until - now):
                continue
            try:
                data = self.sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                ready = False
                continue
            if not data:
                return False
            items = self._framer.feed(data)
            self._inbox.extend(items)
            if not self._framer.pending:
                self._partial_since = None
            elif items or self._partial_since is None:
                self._partial_since = now
            return True

    def identify(self) -> bool:
        """Pregunta el identificador hasta que sea válido y único."""
        while True:
            line = self.ask(_ASK_IDENTIFIER)
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
        """Pregunta el saldo inicial hasta recibir un entero válido y abre la cuenta de esta sesión."""
        while True:
            line = self.ask(_ASK_BALANCE)
            if line is None:
                return False
            try:
                balance = proto.parse_amount(line, allow_zero=True, what="balance")
            except proto.ProtocolError as exc:
                self.send_lines(proto.server_line(str(exc)))
                continue
            self.server.open_account(self, balance)
            self.balance_line = proto.balance_set_line(balance)
            return True

    def join(self) -> bool:
        """Hace visible al usuario: consola, lista de miembros y aviso a los demás.

        La confirmación del saldo queda retenida hasta que el usuario ya es
        miembro: cuando el cliente la lee, los demás ya pueden escribirle o
        transferirle, y lo que le envíen mientras tanto llega después de ella.
        ``False`` si el chat se llenó mientras respondía el saludo.
        """
        assert self.identifier is not None
        self.outbox.pause()
        if not self.server.add_member(self):
            self.outbox.discard_held()
            self.outbox.resume()
            self.send_lines(full_notice(self.server.max_clients), last=True)
            return False
        line = proto.connected_line(self.identifier)
        self.server.console(line)
        self.outbox.resume(_encode((self.balance_line,)))
        self.announce(line)
        return True

    def announce(self, line: str) -> None:
        """Avisa a todos los demás miembros quién entró o salió, sin esperar a ninguno.

        Es lo que haría un lote de una sola difusión, sin el lote: quien entra o
        sale no tiene más que decir, así que nunca espera a un lector con cola.
        """
        data = _encode((line,))
        for member in self.server.members:
            if member is not self:
                member.outbox.push(data)

    def chat(self) -> str:
        """Bucle principal: procesa por lotes todo lo que trae cada ``recv``."""
        prefix = proto.chat_line(self.identifier or "", "")
        while True:
            if not self._inbox and not self._receive(None):
                return "connection closed by client"
            batch = Batch(self)
            quitting = False
            handled = 0
            budget = self._line_budget()
            try:
                inbox = self._inbox
                if len(inbox) <= budget and (block := proto.plain_chat_block(inbox, prefix)) is not None:
                    # Una ráfaga de líneas simples: todas de una vez, sin pasar por el bucle de abajo.
                    handled = len(inbox)
                    inbox.clear()
                    if block:
                        batch.broadcast(block)
                while self._inbox and not quitting and handled < budget:
                    item = self._inbox.popleft()
                    handled += 1
                    if isinstance(item, str):
                        if ":" not in item and item.isprintable():
                            # El caso de una ráfaga: sin ":" no es comando ni emoji, e
                            # imprimible no hay nada que sanear; igual que ``relay``.
                            if text := item.strip():
                                batch.broadcast(prefix + text)
                            continue
                        if item.startswith(":t ") and (plain := proto.parse_plain_transfer(item)):
                            # Una ráfaga de :t en su forma exacta: sin Command ni despacho.
                            self.transfer(plain[0], plain[1], batch)
                            continue
                        if item == QUIT_LINE:
                            # Con lo que termina cada sesión; lo mismo que ``on_quit``.
                            quitting = True
                            continue
                    elif isinstance(item, proto.ProtocolError):
                        batch.reply(proto.server_line(str(item)))
                        continue
                    if proto.might_be_command(item):
                        command = proto.parse_line(item)
                        quitting = HANDLERS[command.name](self, command, batch)
                    else:
                        self.relay(item, batch)
            finally:
                self._release_bank()
            batch.flush(self.server.members)
            if quitting:
                self._inbox.clear()
                return "quit"
            self._tokens -= handled

    def _bank(self) -> Bank:
        """El banco, con su lock tomado una sola vez por lote (ver ``Bank.held``).

        Se suelta en ``_release_bank`` antes de enviar el lote: nunca se espera
        a un socket con el banco tomado.
        """
        bank = self.server.bank
        if self._bank_hold is None and self.server.bank_batches:
            hold = bank.held()
            hold.__enter__()
            self._bank_hold = hold
        return bank

    def _release_bank(self) -> None:
        hold, self._bank_hold = self._bank_hold, None
        if hold is not None:
            hold.__exit__(None, None, None)

    def _line_budget(self) -> float:
        """``--max-line-rate``: cuántas líneas se pueden procesar ahora (espera si ninguna).

        Mientras espera, el hilo no lee su socket y TCP frena al cliente: nada se descarta.
        """
        rate = self.server.max_line_rate
        if not rate:
            return math.inf
        while True:
            now = time.monotonic()
            self._tokens = min(rate, self._tokens + (now - self._tokens_at) * rate)
            self._tokens_at = now
            if self._tokens >= 1:
                return self._tokens
            if self.server.stopped_event.wait((1 - self._tokens) / rate):
                raise ServerStopping

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
        """``:p - <id> - <mensaje>``: solo lo ve el destinatario; vacío tras sanear, no se envía."""
        target_name, text = command.args
        target = self.server.find_member(target_name)
        if target is None:
            batch.reply(self._no_such_user(target_name))
            return False
        text = proto.render_emojis(proto.sanitize(text)).strip()
        if not text:
            batch.reply(EMPTY_PRIVATE_NOTICE)
            return False
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
        assert self.account is not None
        batch.reply(proto.funds_line(self._bank().balance(self.account)))
        return False

    def on_transfer(self, command: proto.Command, batch: Batch) -> bool:
        """``:t - <id> - <monto>``: transferencia atómica entre las cuentas de dos sesiones.

        El destinatario se resuelve una sola vez a una sesión y se transfiere a
        la cuenta de esa sesión: si se fue entretanto, su cuenta ya no existe y
        el dinero no llega a nadie más, aunque otro tome su nombre.
        """
        target_name, amount_text = command.args
        try:
            amount = proto.parse_amount(amount_text, allow_zero=False)
        except proto.ProtocolError as exc:
            batch.reply(proto.server_line(str(exc)))
            return False
        self.transfer(target_name, amount, batch)
        return False

    def transfer(self, target_name: str, amount: int, batch: Batch) -> None:
        """El cuerpo de ``:t`` con el monto ya validado (también lo usa el camino rápido de ``chat``).

        Un rechazo por fondos se decide sin el lock del banco. Solo esta sesión
        gasta de su cuenta (los demás hilos solo le depositan), así que entre el
        momento en que se encontró al destinatario conectado (en
        ``member_names``, que se lee sin lock) y la lectura del saldo este no
        bajó: si lo leído no alcanza, tampoco alcanzaba entonces, y la respuesta
        es verdad en ese instante. El banco se toma solo para mover dinero, y se
        suelta en el primer rechazo: cien clientes sin fondos que envían ráfagas
        de ``:t`` no hacen fila en el banco.
        """
        assert self.identifier is not None and self.account is not None
        key = proto.identifier_key(target_name)
        if key == self.key:
            batch.reply(proto.server_line("You cannot transfer money to yourself."))
            return
        server = self.server
        if self._bank_hold is None and server.bank_batches:
            # Sin lock: ``member_names`` es una copia que nadie modifica.
            if key not in server.member_names:
                batch.reply(self._no_such_user(target_name))
                return
            balance = server.bank.balance_unlocked(self.account)
            if balance is not None and balance < amount:
                batch.reply(proto.INSUFFICIENT_FUNDS)
                return
        bank = self._bank()
        # Con el banco tomado para el lote, ninguna cuenta se cierra ni se reabre
        # hasta soltarlo: basta resolver la cuenta, sin retenerla.
        held = self._bank_hold is not None
        found = self.server.member_account(key) if held else self.server.hold_account(key)
        if found is None:
            batch.reply(self._no_such_user(target_name))
            return
        target, account = found
        assert target.identifier is not None
        try:
            # El banco de producción rechaza por fondos sin excepción (el caso común).
            remaining = (
                bank.transfer_if_funds(self.account, account, amount)
                if self.server.bank_batches
                else bank.transfer(self.account, account, amount)
            )
        except InsufficientFunds:
            remaining = None
        except UnknownAccount:
            batch.reply(self._no_such_user(target_name))
            return
        except BankError as exc:
            batch.reply(proto.server_line(f"The transfer was rejected: {exc}."))
            return
        finally:
            if not held:
                self.server.unhold_account(account)
        if remaining is None:
            batch.reply(proto.INSUFFICIENT_FUNDS)
            self._release_bank()  # la racha de transferencias terminó: los rechazos que sigan no lo necesitan
        else:
            batch.reply(proto.transfer_sent_line(amount, target.identifier, remaining))
            batch.to(target, proto.transfer_received_line(self.identifier, amount))

    def on_help(self, command: proto.Command, batch: Batch) -> bool:
        """``:h``: la ayuda se genera desde la tabla de comandos."""
        batch.reply(*proto.help_lines())
        return False

    @staticmethod
    def _no_such_user(name: str) -> str:
        return proto.server_line(f"There is no connected user called '{proto.sanitize(name)}'.")

    def leave(self, reason: str) -> None:
        """Despedida y limpieza; se ejecuta siempre, termine como termine la conexión.

        Nombre, membresía y cuenta se liberan en un paso (``ChatServer.release``):
        quien vuelva con el mismo nombre apenas reciba la despedida siempre puede entrar.
        """
        was_member = self.server.release(self)
        if was_member and self.identifier is not None:
            line = proto.disconnected_line(self.identifier)
            self.server.console(line)
            if self.outbox.overflowed:
                log.warning("%s was disconnected: %s", self.identifier, self.outbox.closed_reason)
            else:
                log.debug("%s disconnected: %s", self.identifier, self.outbox.closed_reason or reason)
            if not self.server.stopping:
                self.announce(line)
        if reason == "quit":
            self.outbox.push(_GOODBYE, last=True)
        elif reason == "server stopping":
            # stop() también lo encola; el primero sella la cola y no hay duplicado.
            self.send_lines(SHUTDOWN_NOTICE, last=True)
        try:
            self._close_gracefully()
        finally:
            self.server.forget(self)

    def _close_gracefully(self) -> None:
        """Cierre ordenado: vaciar la cola, enviar FIN y cerrar sin perder la despedida.

        Al detener el servidor se espera hasta casi el plazo de ``stop()``: quien
        lea a tiempo recibe todo lo que tenía en cola y el aviso de cierre.
        """
        now = time.monotonic()
        deadline = now + CLOSE_LINGER
        if self.server.stopping:
            deadline = max(now, self.server.stop_deadline - 0.1)
        self.outbox.wait_drained(deadline - now)
        self.outbox.close()
        self._waiter.ignore_wake()
        try:
            self.sock.shutdown(socket.SHUT_WR)
            # Leer lo que quede evita un RST que podría borrar la despedida en el cliente.
            # Como en ``_receive``, primero sin esperar: el FIN puede haber llegado ya.
            ready = True
            while (remaining := deadline - time.monotonic()) > 0:
                if not ready and not self._waiter.wait(remaining):
                    continue
                try:
                    if not self.sock.recv(RECV_SIZE):
                        break
                except (BlockingIOError, InterruptedError):
                    ready = False
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
    retorna cuando ya se puede conectar; ``stop()`` avisa a todos, da a cada
    cliente hasta ``STOP_TIMEOUT`` para recibir lo pendiente, cierra cada
    socket y espera a cada hilo.

    Límites: ``max_clients`` usuarios unidos; aparte, a lo más
    ``max_handshakes`` conexiones en el saludo, y por dirección de origen
    ``max_handshakes_per_ip`` respondiendo preguntas a la vez (otras tantas
    esperan su turno; más allá se rechazan con una línea). ``0`` lo desactiva.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 5000,
        *,
        max_clients: int = 256,
        bank: Bank | None = None,
        console: Callable[[str], None] | None = write_line,
        handshake_timeout: float = 120.0,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
        max_handshakes: int = DEFAULT_MAX_HANDSHAKES,
        max_handshakes_per_ip: int = DEFAULT_MAX_HANDSHAKES_PER_IP,
        max_line_rate: float = 0.0,
        newline_hint_after: float = NEWLINE_HINT_AFTER,
        console_history: int = DEFAULT_CONSOLE_HISTORY,
    ) -> None:
        if max_clients < 1 or max_handshakes < 1 or max_handshakes_per_ip < 0 or console_history < 0:
            raise ValueError("client limits must be positive (max_handshakes_per_ip may be 0)")
        if not handshake_timeout > 0 or max_line_rate < 0 or queue_limit < 1:
            raise ValueError("timeouts and limits must be positive")
        self.host = host
        self.port = port
        self.max_clients = max_clients
        self.max_handshakes = max_handshakes
        self.max_handshakes_per_ip = max_handshakes_per_ip
        self.max_line_rate = max_line_rate
        self.newline_hint_after = newline_hint_after
        self.bank = bank if bank is not None else Bank()
        # Solo el banco de producción procesa lotes con un lock: las estrategias
        # del laboratorio existen para mostrar qué pasa operación por operación.
        self.bank_batches = type(self.bank) is Bank
        self.handshake_timeout = handshake_timeout
        self.queue_limit = queue_limit
        # ``deque.append`` es atómico y la cota la pone ``maxlen``: la consola no necesita lock.
        self._console_recent: deque[str] = deque(maxlen=console_history)
        self._writer = (
            None
            if console is None
            else ConsoleWriter(console, batch_sink=write_lines if console is write_line else None)
        )
        self.flusher = Flusher()
        self.stopping = False
        self.stop_deadline = math.inf
        self.stopped_event = threading.Event()
        self._warn = RateLimitedLog(log)
        self._lock = threading.Lock()
        self._turns = threading.Condition(self._lock)
        # Cuántos esperan turno: sin nadie esperando, terminar un saludo no avisa (el caso común).
        self._turn_waiters = 0
        self._sessions: set[Session] = set()
        self._names: dict[str, Session] = {}
        self._owners: dict[str, str] = {}
        self._held: dict[str, int] = {}
        self._serial = 0
        self._joining = 0
        self._pre_join: dict[str, int] = {}
        self._asking: dict[str, int] = {}
        self.members: tuple[Session, ...] = ()
        # Los miembros por clave de identificador, con la misma regla que ``members``:
        # nunca se modifica, se reemplaza con el lock tomado, y se lee sin lock.
        self.member_names: dict[str, Session] = {}
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self.wake_socket, self._wake_w = socket.socketpair()
        self.wake_socket.setblocking(False)
        self._wake_w.setblocking(False)
        self._started = False

    @property
    def address(self) -> Address:
        """Dirección real en que escucha (útil con ``port=0``)."""
        if self._listener is None:
            raise RuntimeError("the server is not listening")
        host, port = self._listener.getsockname()[:2]
        return host, port

    @property
    def console_lines(self) -> list[str]:
        """Las últimas ``console_history`` líneas de la consola, de la más antigua a la más nueva."""
        return list(self._console_recent)

    def console(self, line: str) -> None:
        """Escribe en la consola del servidor (sin esperarla) y guarda las últimas líneas."""
        self._console_recent.append(line)
        if self._writer is not None:
            self._writer.write(line)

    def start(self) -> Address:
        """Escucha y lanza el bucle de aceptación; retorna la dirección."""
        if self._started:
            raise RuntimeError("a ChatServer can only be started once")
        self._started = True
        listener = socket.create_server((self.host, self.port), backlog=min(self.max_clients, 4096))
        listener.setblocking(False)
        self._listener = listener
        self.flusher.start()
        if self._writer is not None:
            self._writer.start()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="chatlib-accept", daemon=True)
        self._accept_thread.start()
        return self.address

    def __enter__(self) -> ChatServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        """Bucle de aceptación: espera al socket de escucha o al despertador de ``stop()``."""
        assert self._listener is not None
        waiter = Waiter(self._listener, self.wake_socket)
        ready = True
        while not self.stopping:
            # Con clientes llegando siempre hay otra conexión en cola: se acepta
            # sin esperar, y solo cuando la cola está vacía se espera con ``poll``.
            if ready or waiter.wait(None):
                ready = not self.stopping and self._accept_one()

    def _accept_one(self) -> bool:
        """Acepta una conexión; cualquier falla queda en esa conexión y el bucle sigue.

        ``False`` si no había ninguna en cola (o falló ``accept``): hay que esperar.
        """
        assert self._listener is not None
        try:
            sock, peer = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            # EMFILE y similares: la conexión sigue en la cola; se reintenta en un momento.
            self._warn.warning("accept", "accept failed: %s", exc)
            self.stopped_event.wait(ACCEPT_BACKOFF)
            return False
        try:
            self._start_session(sock, (peer[0], peer[1]))
        except Exception as exc:
            self._warn.warning("session", "could not start a session for %s:%s: %r", peer[0], peer[1], exc)
            self._refuse(sock, FAILED_NOTICE)
        return True

    def _start_session(self, sock: socket.socket, peer: Address) -> None:
        """Un hilo ``Session`` nuevo por cliente, o un rechazo con una línea si no hay cupo."""
        accepted_at = time.monotonic()
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            refusal = self._admission(peer[0])
            if refusal is None:
                session = Session(self, sock, peer, accepted_at)
                self._sessions.add(session)
                session.in_handshake = True
                self._joining += 1
                self._pre_join[peer[0]] = self._pre_join.get(peer[0], 0) + 1
        if refusal is not None:
            self._refuse(sock, refusal)
            return
        try:
            session.thread.start()
        except BaseException:
            with self._lock:
                self._sessions.discard(session)
                self._end_handshake_locked(session)
            raise

    def _admission(self, host: str) -> str | None:
        """El aviso de rechazo para una conexión nueva desde ``host``, o ``None`` si entra."""
        if len(self.members) >= self.max_clients:
            return full_notice(self.max_clients)
        per_ip = self.max_handshakes_per_ip
        if per_ip and self._pre_join.get(host, 0) >= 2 * per_ip:
            return BUSY_ADDRESS_NOTICE
        if self._joining >= self.max_handshakes:
            return BUSY_NOTICE
        return None

    def _refuse(self, sock: socket.socket, notice: str) -> None:
        """Una línea clara y se cierra, sin crear un hilo."""
        try:
            sock.setblocking(False)
            sock.send((notice + "\n").encode(proto.ENCODING))
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            sock.close()
        log.info("refused a connection: %s", notice.removeprefix(proto.SERVER_PREFIX))

    def wait_turn(self, session: Session, *, block: bool = True) -> bool:
        """Espera a que ``session`` pueda responder preguntas según el cupo de su dirección.

        Lanza ``TimeoutError`` si vence el plazo de su saludo y ``ServerStopping``
        si el servidor se detiene. Con ``block=False`` no espera: ``False`` si
        no había cupo (y no toma turno).
        """
        per_ip = self.max_handshakes_per_ip
        host = session.peer[0]
        with self._lock:
            while per_ip and self._asking.get(host, 0) >= per_ip:
                if not block:
                    return False
                if self.stopping:
                    raise ServerStopping
                remaining = session.deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                self._turn_waiters += 1
                try:
                    self._turns.wait(remaining)
                finally:
                    self._turn_waiters -= 1
            if self.stopping:
                raise ServerStopping
            self._asking[host] = self._asking.get(host, 0) + 1
            session.has_turn = True
            return True

    def end_handshake(self, session: Session) -> None:
        """El saludo terminó (bien o mal): libera su cupo y despierta a quien espera turno."""
        with self._lock:
            self._end_handshake_locked(session)

    def _end_handshake_locked(self, session: Session) -> None:
        if not session.in_handshake:
            return
        session.in_handshake = False
        host = session.peer[0]
        self._joining -= 1
        _decrement(self._pre_join, host)
        if session.has_turn:
            session.has_turn = False
            _decrement(self._asking, host)
            if self._turn_waiters:
                self._turns.notify_all()

    def reserve_identifier(self, session: Session, identifier: str) -> bool:
        """Reserva un identificador (sin distinguir mayúsculas); ``False`` si está ocupado.

        La clave queda en ``session.key`` en el mismo paso: ``release`` la libera con ella.
        """
        key = proto.identifier_key(identifier)
        with self._lock:
            if key in self._names:
                return False
            self._names[key] = session
            session.key = key
            return True

    def open_account(self, session: Session, balance: int) -> None:
        """Abre la cuenta de ``session`` con una clave que no comparte con ninguna sesión viva.

        La clave es el identificador (legible en el banco y el laboratorio)
        salvo que esa clave siga abierta o que una transferencia en curso la
        haya resuelto para la sesión anterior con ese nombre: entonces se le
        agrega ``#n``. Así el dinero dirigido a quien se fue nunca llega a
        quien tomó su nombre.
        """
        assert session.identifier is not None
        with self._lock:
            key = session.identifier
            if key in self._owners or key in self._held:
                self._serial += 1
                key = f"{session.identifier}#{self._serial}"
            self._owners[key] = session.identifier
        try:
            self.bank.open(key, balance)
        except BaseException:
            with self._lock:
                del self._owners[key]
            raise
        session.account = key

    def hold_account(self, key: str) -> tuple[Session, str] | None:
        """Resuelve un destinatario (por su ``identifier_key``) a una sesión y su cuenta, en un paso.

        Mientras la cuenta esté retenida (hasta ``unhold_account``) ninguna
        sesión nueva recibe esa misma clave.
        """
        with self._lock:
            session = self._names.get(key)
            if session is None or not session.joined or session.account is None:
                return None
            account = session.account
            self._held[account] = self._held.get(account, 0) + 1
            return session, account

    def member_account(self, key: str) -> tuple[Session, str] | None:
        """Como ``hold_account`` pero sin retener: solo para quien tiene el banco tomado."""
        with self._lock:
            session = self._names.get(key)
            if session is None or not session.joined or session.account is None:
                return None
            return session, session.account

    def unhold_account(self, account: str) -> None:
        """Termina lo empezado con ``hold_account``."""
        with self._lock:
            _decrement(self._held, account)

    def add_member(self, session: Session) -> bool:
        """Agrega a los miembros (copia nueva: los lectores no toman lock); ``False`` si está lleno."""
        with self._lock:
            if len(self.members) >= self.max_clients:
                return False
            session.joined = True
            self.members = self.members + (session,)
            self.member_names = {**self.member_names, session.key: session}
            return True

    def find_member(self, identifier: str) -> Session | None:
        """Busca un usuario unido por identificador (en ``member_names``, sin lock)."""
        return self.member_names.get(proto.identifier_key(identifier))

    def release(self, session: Session) -> bool:
        """Libera en un paso la membresía, el identificador y la cuenta de ``session``.

        Después de esto el nombre está libre y quien lo tome abre una cuenta
        nueva; una transferencia que ya había resuelto a ``session`` encuentra
        su cuenta cerrada y no mueve dinero. ``True`` si era miembro.
        """
        with self._lock:
            self._end_handshake_locked(session)
            key = session.key
            if self._names.get(key) is session:
                del self._names[key]
            was_member = session.joined
            if was_member:
                session.joined = False
                # Copias nuevas (los lectores no toman lock), hechas en C: con mil miembros
                # no hay un bucle de Python por cada uno.
                i = self.members.index(session)
                self.members = self.members[:i] + self.members[i + 1 :]
                names = dict(self.member_names)
                del names[key]
                self.member_names = names
        account, session.account = session.account, None
        if account is not None:
            try:
                balance = self.bank.close(account)
                log.debug("%s's account closed with %d dollars", session.identifier, balance)
            finally:
                with self._lock:
                    self._owners.pop(account, None)
        return was_member

    def forget(self, session: Session) -> None:
        """La sesión terminó y su socket está cerrado."""
        with self._lock:
            self._end_handshake_locked(session)
            self._sessions.discard(session)

    def accounts(self) -> dict[str, int]:
        """Saldos de los usuarios conectados, por identificador (el banco los guarda por sesión)."""
        balances = self.bank.accounts()
        with self._lock:
            owners = dict(self._owners)
        return {owners[key]: value for key, value in balances.items() if key in owners}

    @property
    def session_count(self) -> int:
        """Conexiones abiertas (incluye las que aún están en el saludo)."""
        with self._lock:
            return len(self._sessions)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Avisa a todos, cierra cada socket y espera cada hilo; retorna en ~``timeout`` segundos.

        Nadie bloquea el cierre: los sockets son no bloqueantes, el despertador
        saca a cada hilo de su espera y quien lea a tiempo recibe lo que tenía
        en cola seguido del aviso de cierre.
        """
        if not self._started or self.stopping:
            return
        deadline = time.monotonic() + timeout
        self.stop_deadline = deadline
        self.stopping = True
        self.stopped_event.set()
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass
        with self._turns:
            self._turns.notify_all()
        if self._accept_thread is not None:
            self._accept_thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.send_lines(SHUTDOWN_NOTICE, last=True)
        for session in sessions:
            if session.thread.is_alive():
                session.thread.join(max(0.0, deadline - time.monotonic()))
        self.flusher.stop(max(0.05, deadline - time.monotonic()))
        if self._writer is not None:
            self._writer.stop(max(0.05, deadline - time.monotonic()))
        if self._listener is not None:
            self._listener.close()
        self.wake_socket.close()
        self._wake_w.close()


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


def _port(text: str) -> int:
    value = _integer(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0-65535)")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = _integer(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return parse


def _seconds(*, allow_zero: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"must be {'>= 0' if allow_zero else '> 0'}, not {text}")
        return value

    return parse


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def build_parser() -> argparse.ArgumentParser:
    """Opciones de línea de comandos del servidor; un valor inválido es un error de uso (código 2)."""
    parser = argparse.ArgumentParser(
        prog="python -m chatlib.server",
        description="Threaded TCP chat server with a small bank.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=_port, default=5000, help="TCP port; 0 picks a free one (default 5000)"
    )
    parser.add_argument(
        "--max-clients", type=_at_least(1), default=256, help="users in the chat at once (default 256)"
    )
    parser.add_argument(
        "--handshake-timeout",
        type=_seconds(allow_zero=False),
        default=120.0,
        help="seconds from connecting to answering the identifier and balance questions (default 120)",
    )
    parser.add_argument(
        "--max-handshakes",
        type=_at_least(1),
        default=DEFAULT_MAX_HANDSHAKES,
        help=f"connections still in the handshake, from all addresses (default {DEFAULT_MAX_HANDSHAKES})",
    )
    parser.add_argument(
        "--max-handshakes-per-ip",
        type=_at_least(0),
        default=DEFAULT_MAX_HANDSHAKES_PER_IP,
        help="connections from one address answering the handshake at once; as many more wait their "
        f"turn, beyond that they are refused; 0 = no limit (default {DEFAULT_MAX_HANDSHAKES_PER_IP})",
    )
    parser.add_argument(
        "--max-line-rate",
        type=_seconds(allow_zero=True),
        default=0.0,
        metavar="LINES_PER_S",
        help="read at most this many lines per second from each client; 0 = no limit (default 0)",
    )
    parser.add_argument(
        "--switch-interval",
        type=_seconds(allow_zero=False),
        default=SWITCH_INTERVAL,
        metavar="SECONDS",
        help="how long a thread may keep Python's GIL while others wait for it "
        f"(sys.setswitchinterval; CPython's default is 0.005) (default {SWITCH_INTERVAL})",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default="INFO",
        help="logging level for diagnostics on stderr (default INFO)",
    )
    parser.add_argument(
        "--unsafe-bank",
        nargs="?",
        type=_seconds(allow_zero=True),
        const=0.01,
        default=None,
        metavar="WINDOW",
        help="race-condition lab only: transfers WITHOUT a lock, sleeping WINDOW seconds "
        "(default 0.01) between each read and write so concurrent transfers lose money",
    )
    return parser


def _say(text: str) -> None:
    """Imprime una línea del programa; una salida rota no lo detiene."""
    try:
        print(text, flush=True)
    except OSError:
        pass


def _silence_broken_stdout() -> None:
    """Si la salida estándar se rompió, la redirige a nulo para salir sin error al vaciarla."""
    try:
        sys.stdout.flush()
    except OSError:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass


def main(argv: list[str] | None = None) -> int:
    """Punto de entrada de ``python -m chatlib.server``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")
    sys.setswitchinterval(args.switch_interval)
    bank: Bank | None = None
    if args.unsafe_bank is not None:
        # Import tardío: el servidor normal no carga el laboratorio de carreras.
        from chatlib.lab import unsafe_bank

        bank = unsafe_bank(args.unsafe_bank)
        _say(
            "!" * 72 + "\n!!! WARNING: --unsafe-bank: transfers run WITHOUT A LOCK "
            f"(race window {args.unsafe_bank:g} s)."
            "\n!!! Concurrent transfers WILL lose updates: money appears and vanishes."
            "\n!!! Race-condition lab only. Never trust the balances of this server.\n" + "!" * 72
        )
    server = ChatServer(
        args.host,
        args.port,
        max_clients=args.max_clients,
        bank=bank,
        handshake_timeout=args.handshake_timeout,
        max_handshakes=args.max_handshakes,
        max_handshakes_per_ip=args.max_handshakes_per_ip,
        max_line_rate=args.max_line_rate,
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
    _say(f"Listening on {host}:{port} (Ctrl-C to stop)")
    try:
        while not done.wait(0.5):
            pass
        _say("Shutting down...")
    finally:
        server.stop()
        _silence_broken_stdout()
    return 0


if __name__ == "__main__":
    sys.exit(main())
