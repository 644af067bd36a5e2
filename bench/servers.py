"""Arrancar y observar los servidores como procesos separados.

Cada servidor corre en su propio proceso (así el GIL del generador de carga no
es el del servidor) y se lee su uso de recursos desde ``/proc/<pid>``: hilos,
descriptores abiertos, memoria residente y tiempo de CPU.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[1]
LISTENING_RE: Final = re.compile(r"(\d+\.\d+\.\d+\.\d+):(\d+)")

_LOOPBACK: Final = ["--host", "127.0.0.1", "--port", "0"]
_FLOOR: Final = [sys.executable, str(ROOT / "bench" / "floor_server.py"), *_LOOPBACK]

# Nombre corto -> línea de comandos (sin --max-clients).
SERVER_COMMANDS: Final[dict[str, list[str]]] = {
    "threaded": [sys.executable, "-m", "chatlib.server", *_LOOPBACK],
    "asyncio": [sys.executable, str(ROOT / "bench" / "async_server.py"), *_LOOPBACK],
    # El piso de memoria: un hilo quieto por conexión y nada más (la fila de memoria).
    "floor": _FLOOR,
    # El techo de las altas: el mismo piso, más los avisos de entrada y salida del requisito 4.
    "floor+notices": [*_FLOOR, "--notices"],
    # El mismo techo con la E/S portable de chatlib (no bloqueante, ``poll`` con plazo antes de ``recv``).
    "floor+portable": [*_FLOOR, "--notices", "--portable"],
    # El techo de la difusión y la latencia: el mismo piso, con avisos, que además reenvía el chat.
    "floor+relay": [*_FLOOR, "--notices", "--relay"],
}


def threaded_available() -> bool:
    """El servidor con hilos existe en el árbol (lo escribe otra persona)."""
    return (ROOT / "chatlib" / "server.py").exists()


def raise_fd_limit(wanted: int = 65536) -> int:
    """Sube el límite blando de descriptores; los hijos lo heredan."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass(frozen=True)
class ProcSample:
    """Una foto de ``/proc/<pid>``."""

    threads: int
    fds: int
    rss_kib: int
    cpu_seconds: float
    # La parte de ``cpu_seconds`` en modo usuario: el Python del servidor (``bench/joins_model.py``).
    user_seconds: float


_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


def sample(pid: int) -> ProcSample:
    """Lee hilos y VmRSS de ``status``, descriptores de ``fd`` y CPU de ``stat``."""
    threads = rss = 0
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Threads:"):
                threads = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        # El nombre del proceso va entre paréntesis y puede tener espacios.
        fields = stat.read().rsplit(")", 1)[1].split()
    user, system = int(fields[11]) / _CLOCK_TICKS, int(fields[12]) / _CLOCK_TICKS
    return ProcSample(threads, fds, rss, user + system, user)


class ServerProcess:
    """Un servidor de chat en un subproceso, con su salida en archivos temporales.

    La salida va a archivos y no a un ``PIPE``: el servidor imprime una línea por
    cada conexión y un pipe que nadie lee lo bloquearía al llenarse.
    """

    def __init__(
        self, kind: str, max_clients: int, start_timeout: float = 15.0, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.kind = kind
        # Opciones que se agregan a la línea de ``SERVER_COMMANDS`` (``bench/joins_model.py``).
        self.extra_args = extra_args
        self.max_clients = max_clients
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.address: tuple[str, int] = ("127.0.0.1", 0)
        self._dir = tempfile.TemporaryDirectory(prefix=f"bench-{kind}-")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Lanza el proceso y espera la línea ``Listening on host:port``."""
        command = [*SERVER_COMMANDS[self.kind], *self.extra_args, "--max-clients", str(self.max_clients)]
        out_path = Path(self._dir.name) / "stdout.txt"
        err_path = Path(self._dir.name) / "stderr.txt"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            self.proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            with open(out_path, "rb") as out:
                head = out.read(4096).decode(errors="replace")
            match = LISTENING_RE.search(head)
            if match:
                self.address = (match.group(1), int(match.group(2)))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        tail = err_path.read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"{self.kind} server did not start: {tail}")

    def sample(self) -> ProcSample:
        """Foto de recursos del proceso servidor."""
        return sample(self.pid)

    def stderr_tail(self, size: int = 2000) -> str:
        """Últimos bytes de stderr (para diagnosticar un fallo)."""
        path = Path(self._dir.name) / "stderr.txt"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM, espera corta y SIGKILL si hace falta; siempre limpia los temporales."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(3.0)
        self._dir.cleanup()
