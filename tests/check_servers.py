"""Servidores pequeños, escritos como los escriben los alumnos, para probar el verificador.

Un solo servidor con perillas: encuadre (líneas o ``send()`` sin ``\\n`` que
compara ``data == ":q"``), identificadores pedidos o tomados de
``getpeername()``, otra redacción donde el enunciado no fija el texto, eco al
emisor, olvido del aviso de desconexión, banco sin lock, uno que nunca
responde, uno que corta después de la bienvenida y uno sin hilos. Cada prueba sabe qué
veredictos esperar de cada combinación.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass
from typing import Literal

from chatlib import protocol as proto


@dataclass(frozen=True, slots=True)
class Quirks:
    """Cómo se desvía este servidor del de referencia."""

    framing: Literal["lines", "bare"] = "lines"
    crlf: bool = False
    ids: Literal["asked", "peer"] = "asked"
    other_wording: bool = False
    echo: bool = False
    disconnect_notice: bool = True
    lock: bool = True
    silent: bool = False
    hang_up: bool = False
    unique: bool = True
    other_confirmation: bool = False
    serial: bool = False
    recv_reads: bool = False
    welcome: str = proto.WELCOME


class StudentServer:
    """Un hilo por conexión, un diccionario de saldos y nada más; se inicia y detiene en la prueba."""

    def __init__(self, quirks: Quirks) -> None:
        self.quirks = quirks
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self._clients: dict[str, socket.socket] = {}
        self._balances: dict[str, int] = {}
        self._registry = threading.Lock()
        self._bank_lock: contextlib.AbstractContextManager[object] = (
            threading.Lock() if quirks.lock else contextlib.nullcontext()
        )
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)

    def __enter__(self) -> StudentServer:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._acceptor.join(5)
        with self._registry:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, addr = self._listener.accept()
            except OSError:
                return
            with self._registry:
                self._conns.append(conn)
            if self.quirks.serial:
                # Sin un hilo por conexión: atiende a un cliente a la vez.
                self._serve(conn)
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _send(self, conn: socket.socket, text: str) -> None:
        if self.quirks.framing == "bare":
            conn.send(text.encode())
        else:
            conn.sendall((text + ("\r\n" if self.quirks.crlf else "\n")).encode())

    def _broadcast(self, text: str, sender: str | None) -> None:
        with self._registry:
            targets = [c for name, c in self._clients.items() if name != sender or self.quirks.echo]
        for conn in targets:
            with contextlib.suppress(OSError):
                self._send(conn, text)

    def _serve(self, conn: socket.socket) -> None:
        name: str | None = None
        try:
            if self.quirks.silent:
                self._stop.wait()
                return
            reader = _Reader(conn, "recv" if self.quirks.recv_reads else self.quirks.framing)
            self._send(conn, self.quirks.welcome)
            if self.quirks.hang_up:
                return
            name = self._identify(conn, reader)
            if name is None:
                return
            self._send(conn, proto.ASK_BALANCE)
            answer = reader.next()
            if answer is None:
                return
            balance = int(answer)
            self._send(
                conn,
                f"OK, balance = {balance}"
                if self.quirks.other_confirmation
                else proto.balance_set_line(balance),
            )
            with self._registry:
                self._clients[name] = conn
                self._balances[name] = balance
            self._broadcast(proto.connected_line(name), name)
            self._chat(conn, reader, name)
        except (OSError, ValueError):
            pass
        finally:
            if name is not None:
                with self._registry:
                    joined = self._clients.pop(name, None) is not None
                    self._balances.pop(name, None)
                if joined and self.quirks.disconnect_notice:
                    self._broadcast(proto.disconnected_line(name), name)
            conn.close()

    def _identify(self, conn: socket.socket, reader: _Reader) -> str | None:
        if self.quirks.ids == "peer":
            return str(conn.getpeername())
        while True:
            if self.quirks.other_wording:
                # Como input(): el cursor queda en la misma línea, sin \n.
                conn.sendall(b"Please type a nickname: ")
            else:
                self._send(conn, proto.ASK_IDENTIFIER)
            name = reader.next()
            if name is None:
                return None
            with self._registry:
                taken = name in self._clients and self.quirks.unique
            if not taken:
                return name
            self._send(conn, "Nickname taken, try another one" if self.quirks.other_wording else "In use.")

    def _chat(self, conn: socket.socket, reader: _Reader, name: str) -> None:
        alt = self.quirks.other_wording
        while (data := reader.next()) is not None:
            if data == ":q":
                self._send(conn, proto.GOODBYE)
                return
            if data == ":u":
                with self._registry:
                    names = list(self._clients)
                if alt:
                    for line in ["Online now:", *(f" - {n}" for n in names)]:
                        self._send(conn, line)
                else:
                    self._send(conn, proto.users_line(names))
            elif data == ":funds":
                with self._registry:
                    balance = self._balances[name]
                self._send(conn, proto.funds_line(balance))
            elif data.startswith(":p - "):
                _, target, text = data.split(" - ", 2)
                with self._registry:
                    peer = self._clients.get(target)
                if peer is None:
                    self._send(conn, "No such user" if alt else "Unknown user.")
                else:
                    self._send(peer, f"[PM from {name}] {text}" if alt else proto.private_line(name, text))
            elif data.startswith(":t - "):
                _, target, amount = data.split(" - ", 2)
                self._send(conn, self._transfer(name, target, amount))
            else:
                self._broadcast(f"{name}: {proto.EMOJIS.get(data, data)}", name)

    def _transfer(self, source: str, target: str, text: str) -> str:
        alt = self.quirks.other_wording
        if not text.isdigit() or int(text) <= 0 or target == source:
            return "Bad amount" if alt else "Invalid transfer."
        amount = int(text)
        with self._bank_lock:
            if target not in self._balances:
                return "No such user" if alt else "Unknown user."
            if self._balances[source] < amount:
                return proto.INSUFFICIENT_FUNDS
            self._balances[source] -= amount
            self._balances[target] += amount
        return f"Done: sent {amount} to {target}." if alt else f"Sent {amount}."


class _Reader:
    """Lo que el alumno haría: líneas con ``\\n``, o cada ``recv`` es un mensaje (tal cual o sin espacios)."""

    def __init__(self, conn: socket.socket, framing: Literal["lines", "bare", "recv"]) -> None:
        self.conn = conn
        self.framing = framing
        self._buffer = b""

    def next(self) -> str | None:
        if self.framing != "lines":
            data = self.conn.recv(1024)
            if not data:
                return None
            return data.decode().strip() if self.framing == "recv" else data.decode()
        while b"\n" not in self._buffer:
            data = self.conn.recv(1024)
            if not data:
                return None
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode().rstrip("\r")
