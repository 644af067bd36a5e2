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
``send`` bloqueante por cada uno. Es el techo de la fila de altas: un servidor
de un hilo por conexión que cumple el protocolo y no hace nada más.

Uso: ``python bench/floor_server.py --host 127.0.0.1 --port 0 [--max-clients N] [--notices]``.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chatlib import protocol as proto  # noqa: E402

_GREETING = (proto.WELCOME + "\n" + proto.ASK_IDENTIFIER + "\n").encode()
_ASK_BALANCE = (proto.ASK_BALANCE + "\n").encode()
_GOODBYE = (proto.GOODBYE + "\n").encode()


def _read_line(sock: socket.socket) -> bytes | None:
    """Lee hasta un ``\\n`` (el saludo es corto: basta con acumular)."""
    data = b""
    while b"\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk
    return data.split(b"\n", 1)[0].rstrip(b"\r")


class Members:
    """Los sockets unidos, para los avisos de ``--notices`` (sin banco, colas ni control de flujo)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []

    def join(self, sock: socket.socket, name: str) -> None:
        with self._lock:
            self._socks.append(sock)
        self._tell_others(sock, proto.connected_line(name))

    def leave(self, sock: socket.socket, name: str) -> None:
        with self._lock:
            if sock not in self._socks:
                return
            self._socks.remove(sock)
        self._tell_others(sock, proto.disconnected_line(name))

    def _tell_others(self, sock: socket.socket, line: str) -> None:
        data = (line + "\n").encode()
        with self._lock:
            others = [other for other in self._socks if other is not sock]
        for other in others:
            try:
                other.send(data)
            except OSError:
                pass


def _serve(sock: socket.socket, members: Members | None) -> None:
    """Saludo mínimo y luego un hilo quieto, bloqueado en ``recv``."""
    name = ""
    try:
        sock.sendall(_GREETING)
        identifier = _read_line(sock)
        if identifier is None:
            return
        sock.sendall(_ASK_BALANCE)
        balance = _read_line(sock)
        if balance is None:
            return
        sock.sendall((proto.balance_set_line(int(balance or b"0")) + "\n").encode())
        if members is not None:
            name = identifier.decode(errors="replace")
            members.join(sock, name)
        # ``:q`` recibe la despedida: así el mismo hilo mínimo sirve de techo para las altas por segundo.
        if _read_line(sock) == b":q":
            if members is not None:
                members.leave(sock, name)
            sock.sendall(_GOODBYE)
            sock.shutdown(socket.SHUT_WR)
        while sock.recv(4096):
            pass
    except (OSError, ValueError):
        pass
    finally:
        if members is not None:
            members.leave(sock, name)
        sock.close()


def main(argv: list[str] | None = None) -> int:
    """Escucha hasta SIGTERM/SIGINT; imprime ``Listening on host:port``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-clients", type=int, default=4096, help="listen backlog")
    parser.add_argument("--notices", action="store_true", help="tell the others who joined and who left")
    args = parser.parse_args(argv)
    members = Members() if args.notices else None
    listener = socket.create_server((args.host, args.port), backlog=min(args.max_clients, 4096))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    host, port = listener.getsockname()[:2]
    print(f"Listening on {host}:{port}", flush=True)
    try:
        while True:
            sock, _ = listener.accept()
            threading.Thread(target=_serve, args=(sock, members), daemon=True).start()
    except KeyboardInterrupt:
        return 0
    finally:
        listener.close()


if __name__ == "__main__":
    sys.exit(main())
