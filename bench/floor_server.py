"""El piso de memoria de un hilo por conexión: un servidor que no hace nada más.

Acepta, lanza un ``threading.Thread`` por conexión (como exige el requisito 8),
y ese hilo hace el saludo mínimo del protocolo (para que el generador de carga
lo cuente como unido) y luego queda bloqueado en ``recv`` hasta que el cliente
se va (a ``:q`` responde la despedida y cierra: así también es el techo de
altas por segundo). No hay chat, banco, colas ni registro de usuarios: la
memoria residente que crece por cliente es lo que cuesta el hilo en sí (su pila tocada, su estado
en el intérprete y en glibc) más un socket. ``bench/run.py`` la mide junto a
los otros dos servidores en la misma corrida: es la cota inferior con la que se
compara ``chatlib.server``.

Con ``--notices`` hace además lo mínimo que el enunciado exige al entrar y
salir (requisito 4): avisa "connected"/"disconnected" a los demás con un
``send`` por cada uno. Es el techo de la fila de altas: un servidor de un hilo
por conexión que cumple el protocolo y no hace nada más.

Con ``--portable`` (junto con ``--notices``) la E/S es la que ``chatlib.server``
usa para funcionar igual en Windows, macOS y Linux y poder cerrarse a tiempo:
sockets no bloqueantes, cada lectura intenta el ``recv`` y, si no hay nada,
espera con un ``poll`` con plazo sobre el socket y un despertador (lo mismo
para ``accept``), cada envío es un ``send`` simple y el cierre espera el EOF del
cliente. Son las mismas clases de llamadas al sistema por alta que las de
``chatlib`` (verificado con ``strace -c`` y ``perf stat``; cuántos ``poll``
depende de cuántas veces la respuesta no había llegado) sin nada más: el techo
de altas para ese diseño.

Con ``--relay`` (junto con ``--notices``) además reenvía el chat: lee lo que
haya llegado (hasta 64 KiB, como chatlib), antepone ``nombre: `` a cada línea
completa con un solo ``join`` y envía ese bloque a cada uno de los demás, entero
(con la E/S portable, esperando con ``poll`` si el socket de destino se llenó).
Nada más: sin comandos, emojis, saneado, límites de ritmo ni colas por cliente.
Es el techo de las filas de difusión (``fanout``) y de latencia: lo que puede un
servidor de un hilo por conexión cuyo chat no hace nada más que reenviar.

Con ``--spin N`` cada sesión ejecuta además N vueltas de un bucle de Python por
alta, repartidas entre sus tres respuestas (identificador, saldo y ``:q``): un
modelo del Python que las funciones de chatlib agregan a cada alta, con el GIL
tomado. ``bench/joins_model.py`` mide con él cuántas altas por segundo cuesta
cada microsegundo de Python.

Uso: ``python bench/floor_server.py --host 127.0.0.1 --port 0 [--max-clients N]
[--notices [--portable] [--relay]] [--spin N]``.
"""

from __future__ import annotations

import argparse
import math
import select
import signal
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chatlib import protocol as proto  # noqa: E402

_GREETING = (proto.WELCOME + "\n" + proto.ASK_IDENTIFIER + "\n").encode()
_ASK_BALANCE = (proto.ASK_BALANCE + "\n").encode()
_GOODBYE = (proto.GOODBYE + "\n").encode()
RELAY_RECV_SIZE = 65536
HANDSHAKE_TIMEOUT = 120.0
CLOSE_LINGER = 2.0


class Connection:
    """Un cliente con sockets bloqueantes: ``sendall`` y ``recv`` esperan lo que haga falta."""

    __slots__ = ("sock", "_buffer", "recv_size")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""
        self.recv_size = 4096

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_all(self, data: bytes) -> None:
        """Todo ``data``, aunque el socket de destino esté lleno (la difusión de ``--relay``)."""
        self.sock.sendall(data)

    def _receive(self, deadline: float) -> bytes:
        return self.sock.recv(self.recv_size)

    def read_line(self, deadline: float = math.inf) -> bytes | None:
        """Lee hasta un ``\\n``; ``None`` si el cliente cerró."""
        while b"\n" not in self._buffer:
            chunk = self._receive(deadline)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.rstrip(b"\r")

    def read_lines(self) -> list[bytes] | None:
        """Las líneas completas que ya llegaron (al menos una); ``None`` si el cliente cerró."""
        while b"\n" not in self._buffer:
            chunk = self._receive(math.inf)
            if not chunk:
                return None
            self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        return lines

    def quit(self) -> None:
        """Tras la despedida: FIN y se espera el cierre del cliente."""
        self.sock.shutdown(socket.SHUT_WR)
        while self.sock.recv(4096):
            pass


class PortableConnection(Connection):
    """Como ``chatlib.server``: no bloqueante, ``poll`` con plazo y despertador antes de cada ``recv``."""

    __slots__ = ("_poll",)

    def __init__(self, sock: socket.socket, wake: socket.socket) -> None:
        super().__init__(sock)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)
        self._poll.register(wake, select.POLLIN)

    def send(self, data: bytes) -> None:
        # En loopback una línea corta siempre cabe: un ``send`` simple, como el camino rápido.
        self.sock.send(data)

    def send_all(self, data: bytes) -> None:
        while True:
            try:
                sent = self.sock.send(data)
            except BlockingIOError:
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
            writable = select.poll()
            writable.register(self.sock, select.POLLOUT)
            writable.poll()

    def _wait(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        return bool(self._poll.poll(-1 if remaining == math.inf else math.ceil(remaining * 1000)))

    def _receive(self, deadline: float) -> bytes:
        # Como ``Session._receive``: primero el ``recv``, y ``poll`` solo si no había nada.
        ready = True
        while True:
            if ready or self._wait(deadline):
                try:
                    return self.sock.recv(4096)
                except BlockingIOError:
                    ready = False

    def quit(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + CLOSE_LINGER
        while self._receive(deadline):
            pass


class Members:
    """Los clientes unidos, para los avisos de ``--notices`` (sin banco, colas ni control de flujo)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._members: list[Connection] = []

    def join(self, conn: Connection, name: str) -> None:
        with self._lock:
            self._members.append(conn)
        self._tell_others(conn, proto.connected_line(name))

    def leave(self, conn: Connection, name: str) -> None:
        with self._lock:
            if conn not in self._members:
                return
            self._members.remove(conn)
        self._tell_others(conn, proto.disconnected_line(name))

    def _others(self, conn: Connection) -> list[Connection]:
        """Una copia de los demás miembros: se les envía sin el lock tomado."""
        with self._lock:
            return [other for other in self._members if other is not conn]

    def _tell_others(self, conn: Connection, line: str) -> None:
        data = (line + "\n").encode()
        for other in self._others(conn):
            try:
                other.send(data)
            except OSError:
                pass

    def relay(self, conn: Connection, data: bytes) -> None:
        """``--relay``: el bloque ya formateado, entero, a cada uno de los demás."""
        for other in self._others(conn):
            try:
                other.send_all(data)
            except OSError:
                pass


def _relay(conn: Connection, members: Members, identifier: bytes) -> bool:
    """El chat de ``--relay`` hasta que el cliente se va; ``True`` si se despidió con ``:q``."""
    prefix = identifier + b": "
    glue = b"\n" + prefix
    conn.recv_size = RELAY_RECV_SIZE
    while True:
        lines = conn.read_lines()
        if lines is None:
            return False
        quitting = b":q" in lines
        if quitting:
            lines = lines[: lines.index(b":q")]
        if lines:
            members.relay(conn, prefix + glue.join(lines) + b"\n")
        if quitting:
            return True


def _work(iterations: int) -> int:
    """Python puro durante ``iterations`` vueltas (``--spin``): ocupa el GIL y nada más."""
    total = 0
    for i in range(iterations):
        total += i
    return total


def _serve(conn: Connection, members: Members | None, spin: int = 0, relay: bool = False) -> None:
    """Saludo mínimo y luego un hilo quieto, esperando al cliente."""
    name = ""
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT
    step = spin // 3
    try:
        conn.send(_GREETING)
        identifier = conn.read_line(deadline)
        if identifier is None:
            return
        _work(step)
        conn.send(_ASK_BALANCE)
        balance = conn.read_line(deadline)
        if balance is None:
            return
        _work(step)
        conn.send((proto.balance_set_line(int(balance or b"0")) + "\n").encode())
        if members is not None:
            name = identifier.decode(errors="replace")
            members.join(conn, name)
        # ``:q`` recibe la despedida: así el mismo hilo mínimo sirve de techo para las altas por segundo.
        if relay and members is not None:
            line = b":q" if _relay(conn, members, identifier) else None
        else:
            line = conn.read_line()
        if line == b":q":
            _work(step)
            if members is not None:
                members.leave(conn, name)
            conn.send(_GOODBYE)
            conn.quit()
        elif line is not None:
            while conn.read_line() is not None:
                pass
    except (OSError, ValueError):
        pass
    finally:
        if members is not None:
            members.leave(conn, name)
        conn.sock.close()


def serve(
    listener: socket.socket,
    members: Members | None,
    wake: socket.socket | None,
    spin: int = 0,
    relay: bool = False,
) -> None:
    """Acepta para siempre: un ``threading.Thread`` por conexión (``wake``: la E/S portable)."""
    accept_poll = None
    if wake is not None:
        listener.setblocking(False)
        accept_poll = select.poll()
        accept_poll.register(listener, select.POLLIN)
        accept_poll.register(wake, select.POLLIN)
    ready = True
    while True:
        # Como ``ChatServer._accept_loop``: se espera con ``poll`` solo cuando la cola quedó vacía.
        if accept_poll is not None and not ready:
            accept_poll.poll()
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            ready = False
            continue
        ready = True
        conn = Connection(sock) if wake is None else PortableConnection(sock, wake)
        threading.Thread(target=_serve, args=(conn, members, spin, relay), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """Escucha hasta SIGTERM/SIGINT; imprime ``Listening on host:port``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-clients", type=int, default=4096, help="listen backlog")
    parser.add_argument("--notices", action="store_true", help="tell the others who joined and who left")
    parser.add_argument("--portable", action="store_true", help="non-blocking sockets and poll, as chatlib")
    parser.add_argument("--relay", action="store_true", help="relay chat to the others (with --notices)")
    parser.add_argument(
        "--spin", type=int, default=0, metavar="N", help="N iterations of a Python loop per join (a model)"
    )
    args = parser.parse_args(argv)
    if args.relay and not args.notices:
        parser.error("--relay needs --notices (the members it relays to)")
    members = Members() if args.notices else None
    listener = socket.create_server((args.host, args.port), backlog=min(args.max_clients, 4096))
    # El despertador de ``stop()`` en chatlib: nadie escribe en él, pero cada espera lo vigila.
    wake, wake_w = socket.socketpair() if args.portable else (None, None)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    host, port = listener.getsockname()[:2]
    print(f"Listening on {host}:{port}", flush=True)
    try:
        serve(listener, members, wake, args.spin, args.relay)
    except KeyboardInterrupt:
        return 0
    finally:
        listener.close()
        for end in (wake, wake_w):
            if end is not None:
                end.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
