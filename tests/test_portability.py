"""Windows, macOS y Linux: el servidor solo usa lo que existe en los tres.

Aquí solo hay Linux, así que se simula lo que falta en Windows: en un
subproceso se quitan ``socket.MSG_DONTWAIT``, ``select.poll`` y ``epoll``
(con eso ``selectors`` usa ``select.select``, como en Windows) y ``chatlib`` no
puede importar ``fcntl``, ``termios``, ``readline`` ni otros módulos solo
POSIX. En ese subproceso corren las pruebas del servidor (lector lento,
justicia del control de flujo, ``stop()`` acotado) y el modo de línea del
cliente por tubería. El arnés de pruebas sí puede usar esos módulos.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest
from chatlib import protocol as proto
from chatlib.client import ChatClient
from chatlib.server import SHUTDOWN_NOTICE, ChatServer

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ["server.py", "outbox.py", "bank.py", "protocol.py", "console.py"]
POSIX_ONLY = {"fcntl", "termios", "readline", "tty", "pty", "resource", "grp", "pwd"}
CHILD = "CHATLIB_PORTABILITY_CHILD"

SHIM = f"""
# Simula una plataforma sin los nombres solo POSIX (cargado como sitecustomize).
import builtins
import select
import selectors
import socket

for name in ("MSG_DONTWAIT",):
    if hasattr(socket, name):
        delattr(socket, name)
for name in ("poll", "epoll", "devpoll", "kqueue"):
    if hasattr(select, name):
        delattr(select, name)
# ``socket`` ya importó ``selectors``, que eligió epoll al cargarse: como en Windows, select().
selectors.DefaultSelector = selectors.SelectSelector

_BLOCKED = {sorted(POSIX_ONLY)!r}
_import = builtins.__import__


def _guarded(name, globals=None, locals=None, fromlist=(), level=0):
    importer = (globals or {{}}).get("__name__") or ""
    if importer.split(".")[0] == "chatlib" and name.split(".")[0] in _BLOCKED:
        raise ImportError(f"{{name}} is POSIX-only (blocked for chatlib by the portability test)")
    return _import(name, globals, locals, fromlist, level)


builtins.__import__ = _guarded
"""


@pytest.fixture(scope="module")
def shim_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("portability")
    (folder / "sitecustomize.py").write_text(SHIM, encoding="utf-8")
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)]),
        CHILD: "1",
        "PYTHONUNBUFFERED": "1",
    }


def _names_of(text: str) -> set[str]:
    """Los nombres de código (sin comentarios ni cadenas) de un texto Python."""
    return {
        token.string
        for token in tokenize.tokenize(io.BytesIO(text.encode()).readline)
        if token.type == tokenize.NAME
    }


def test_runtime_code_uses_no_posix_only_names() -> None:
    forbidden = POSIX_ONLY | {"MSG_DONTWAIT", "kill", "raise_signal", "pthread_kill", "settimeout"}
    for name in RUNTIME:
        assert not (_names_of((ROOT / "chatlib" / name).read_text(encoding="utf-8")) & forbidden), name


def test_the_shim_hides_the_posix_names(shim_env: dict[str, str]) -> None:
    probe = (
        "import select, socket, selectors\n"
        "assert not hasattr(socket, 'MSG_DONTWAIT') and not hasattr(select, 'poll')\n"
        "assert selectors.DefaultSelector is selectors.SelectSelector\n"
        "import chatlib.server, chatlib.client\n"
        "try:\n"
        "    exec('import fcntl', {'__name__': 'chatlib.fake'})\n"
        "except ImportError:\n"
        "    print('blocked')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=shim_env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "blocked"


@pytest.mark.skipif(os.environ.get(CHILD) == "1", reason="already inside the portability subprocess")
def test_server_tests_pass_without_posix_names(shim_env: dict[str, str]) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_server.py",
            "tests/test_outbox.py",
            "tests/test_robustness.py",
            "tests/test_portability.py",
        ],
        cwd=ROOT,
        env=shim_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


class LineClient:
    """``python -m chatlib.client`` en modo de línea: stdin y stdout son tuberías."""

    def __init__(self, address: tuple[str, int], env: dict[str, str]) -> None:
        host, port = address
        self.popen = subprocess.Popen(
            [sys.executable, "-u", "-m", "chatlib.client", "--host", host, "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def write(self, text: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(text + "\n")
        self.popen.stdin.flush()

    def expect(self, wanted: str) -> list[str]:
        """Lee líneas hasta una que contenga ``wanted`` (el cliente puede anteponer ``Me: ``)."""
        assert self.popen.stdout is not None
        seen = []
        for line in self.popen.stdout:
            seen.append(line.rstrip("\n"))
            if wanted in line:
                return seen
        raise AssertionError(f"{wanted!r} never came; saw {seen!r}")

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)
        for stream in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def line_client(shim_env: dict[str, str]) -> Iterator[tuple[ChatServer, LineClient, ChatClient]]:
    srv = ChatServer("127.0.0.1", 0, console=None)
    srv.start()
    other = ChatClient.join(srv.address, "ana", 0)
    client = LineClient(srv.address, shim_env)
    try:
        client.expect(proto.ASK_IDENTIFIER)
        client.write("beto")
        client.expect(proto.ASK_BALANCE)
        client.write("30")
        client.expect(proto.balance_set_line(30))
        other.expect(proto.connected_line("beto"))
        yield srv, client, other
    finally:
        client.close()
        other.close()
        srv.stop()


def test_client_line_mode_chats_and_quits_without_posix_names(
    line_client: tuple[ChatServer, LineClient, ChatClient],
) -> None:
    _, client, other = line_client
    other.send("hola beto")
    client.expect("ana: hola beto")
    client.write("hola ana")
    other.expect("beto: hola ana")
    client.write(":q")
    client.expect(proto.GOODBYE)
    assert client.popen.wait(10) == 0


def test_client_line_mode_exits_1_when_the_server_goes_away(
    line_client: tuple[ChatServer, LineClient, ChatClient],
) -> None:
    srv, client, _ = line_client
    srv.stop()
    client.expect(SHUTDOWN_NOTICE)
    assert client.popen.wait(10) == 1


def test_client_line_mode_exits_2_when_it_cannot_connect(shim_env: dict[str, str]) -> None:
    with ChatServer("127.0.0.1", 0, console=None) as srv:
        host, port = srv.address
    result = subprocess.run(
        [sys.executable, "-m", "chatlib.client", "--host", host, "--port", str(port)],
        cwd=ROOT,
        env=shim_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2


def test_names_helper_reads_real_tokens() -> None:
    assert "MSG_DONTWAIT" in _names_of("x = socket.MSG_DONTWAIT  # comentario\n")
    assert "fcntl" not in _names_of("'''fcntl en un docstring'''\n")
