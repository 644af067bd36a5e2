"""Fixtures comunes: un servidor real en 127.0.0.1 con puerto 0 y clientes que se cierran solos."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator

import pytest
from chatlib.client import ChatClient
from chatlib.server import ChatServer

# Si pytest se lanzó con SIGINT ignorado (``make test &`` en un shell sin control de
# trabajos, ``nohup``), los clientes que lanzan las pruebas lo heredarían ignorado y
# un Ctrl-C simulado no llegaría nunca: se restaura el manejador normal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def server() -> Iterator[ChatServer]:
    srv = ChatServer("127.0.0.1", 0, console=None)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def make_server() -> Iterator[Callable[..., ChatServer]]:
    """Fábrica para servidores con opciones propias; todos se detienen al final."""
    servers: list[ChatServer] = []

    def make(**options: object) -> ChatServer:
        srv = ChatServer("127.0.0.1", 0, console=None, **options)  # type: ignore[arg-type]
        srv.start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


@pytest.fixture
def connect(server: ChatServer) -> Iterator[Callable[..., ChatClient]]:
    """``connect()`` abre un cliente sin saludo; ``connect("ana", 10)`` lo une al chat."""
    clients: list[ChatClient] = []

    def make(identifier: str | None = None, balance: int = 0) -> ChatClient:
        if identifier is None:
            client = ChatClient(server.address)
        else:
            client = ChatClient.join(server.address, identifier, balance)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
