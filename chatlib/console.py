"""La consola del servidor: un único hilo escritor con una cola acotada.

Las líneas del requisito 4 (``[SERVER] Client: <id> connected!``) las producen
muchos hilos a la vez. Si cada uno escribiera por su cuenta, dos líneas podrían
mezclarse, y una consola que no avanza (terminal en pausa, selección de
QuickEdit en Windows, una tubería llena) bloquearía a quien escribe: un
ingreso, una salida o el cierre del servidor. Aquí los hilos solo encolan sin
esperar; un hilo dedicado escribe cada línea completa de una vez. Si la cola
se llena se descartan líneas (y se avisa en el log) en vez de esperar; si la
salida se rompe (``BrokenPipeError``) se deja de escribir y el chat sigue.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 10_000
BATCH_LINES = 256
GATHER = 0.02
"""Segundos que el escritor junta líneas antes de escribir una tanda."""


def write_line(line: str) -> None:
    """Escribe ``line`` en la salida estándar con un solo ``write`` y la vacía."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def write_lines(lines: list[str]) -> None:
    """Como ``write_line`` para varias líneas: un ``write`` y un ``flush`` para todas."""
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()


class RateLimitedLog:
    """Un aviso que se repite se registra a lo más una vez por ``interval`` segundos."""

    def __init__(self, logger: logging.Logger, interval: float = 5.0) -> None:
        self._log = logger
        self.interval = interval
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        """Registra el aviso ``key`` si pasó ``interval`` desde el último; si no, lo cuenta."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            self._last[key] = now
            skipped = self._suppressed.pop(key, 0)
        if skipped:
            message += f" ({skipped} similar messages suppressed)"
        self._log.warning(message, *args)


class ConsoleWriter:
    """Hilo dueño de la consola: ``write`` nunca espera y cada línea sale entera.

    El hilo escritor despierta con la primera línea de una tanda y junta
    durante ``GATHER`` segundos las que lleguen después: con cientos de
    ingresos por segundo despierta unas 50 veces por segundo y no dos veces
    por ingreso (cada despertar es un cambio de contexto y una disputa por el
    GIL con los hilos de las sesiones).
    """

    def __init__(
        self,
        sink: Callable[[str], None],
        queue_size: int = DEFAULT_QUEUE_SIZE,
        *,
        batch_sink: Callable[[list[str]], None] | None = None,
    ) -> None:
        self._sink = sink
        # Con ``batch_sink`` las líneas de una tanda salen en un solo ``write``.
        self._batch_sink = batch_sink
        self._queue_size = queue_size
        self._lines: deque[str] = deque()
        # ``write`` toma el lock directamente: el ``with`` de una ``Condition`` es código Python.
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._idle = False
        self._stopping = False
        self._warn = RateLimitedLog(log)
        self.broken = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="chatlib-console", daemon=True)

    def start(self) -> None:
        """Inicia el hilo escritor."""
        self._thread.start()

    def write(self, line: str) -> None:
        """Encola ``line``; si la consola no da abasto, la descarta en vez de esperar."""
        if self.broken:
            return
        with self._lock:
            if len(self._lines) >= self._queue_size:
                self.dropped += 1
                dropped = self.dropped
            else:
                self._lines.append(line)
                dropped = 0
                # Solo se despierta al escritor si duerme sin tanda pendiente.
                if self._idle:
                    self._idle = False
                    self._ready.notify()
        if dropped:
            self._warn.warning("full", "the console is not keeping up: %d lines dropped", dropped)

    def stop(self, timeout: float) -> None:
        """Escribe lo pendiente y espera al hilo, a lo más ``timeout`` segundos.

        Si la consola está bloqueada el hilo queda esperando en su ``write``
        (es un hilo demonio): el servidor se detiene igual a tiempo.
        """
        with self._ready:
            self._stopping = True
            self._ready.notify()
        if self._thread.is_alive():
            self._thread.join(max(0.0, timeout))

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._lines and not self._stopping:
                    self._idle = True
                    self._ready.wait()
                if not self._stopping:
                    # La tanda se junta sin avisos: quien escribe solo encola.
                    self._ready.wait(GATHER)
                lines = list(self._lines)
                self._lines.clear()
                stop = self._stopping
            for start in range(0, len(lines), BATCH_LINES):
                if not self.broken:
                    self._emit(lines[start : start + BATCH_LINES])
            if stop:
                return

    def _emit(self, lines: list[str]) -> None:
        try:
            if self._batch_sink is not None:
                self._batch_sink(lines)
            else:
                for line in lines:
                    self._sink(line)
        except Exception as exc:
            # Una tubería cerrada (o cualquier falla de la salida) no detiene el chat.
            self.broken = True
            log.warning("the server console is gone (%s); console lines are no longer written", exc)
