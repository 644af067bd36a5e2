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
import queue
import sys
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 10_000
BATCH_LINES = 256
_STOP = object()


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
    """Hilo dueño de la consola: ``write`` nunca espera y cada línea sale entera."""

    def __init__(
        self,
        sink: Callable[[str], None],
        queue_size: int = DEFAULT_QUEUE_SIZE,
        *,
        batch_sink: Callable[[list[str]], None] | None = None,
    ) -> None:
        self._sink = sink
        # Con ``batch_sink`` las líneas que se juntaron mientras se escribía salen
        # de una vez: bajo muchos ingresos por segundo, un ``write`` por tanda y
        # no uno por línea (cada uno suelta y vuelve a pedir el GIL).
        self._batch_sink = batch_sink
        self._queue: queue.Queue[object] = queue.Queue(queue_size)
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
        try:
            self._queue.put_nowait(line)
        except queue.Full:
            self.dropped += 1
            self._warn.warning("full", "the console is not keeping up: %d lines dropped", self.dropped)

    def stop(self, timeout: float) -> None:
        """Escribe lo pendiente y espera al hilo, a lo más ``timeout`` segundos.

        Si la consola está bloqueada el hilo queda esperando en su ``write``
        (es un hilo demonio): el servidor se detiene igual a tiempo.
        """
        deadline = time.monotonic() + timeout
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            self.broken = True
        if self._thread.is_alive():
            self._thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            if self._batch_sink is not None:
                while items[-1] is not _STOP and len(items) < BATCH_LINES:
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
            stop = items[-1] is _STOP
            lines = [str(item) for item in items if item is not _STOP]
            if lines and not self.broken:
                self._emit(lines)
            if stop:
                return

    def _emit(self, lines: list[str]) -> None:
        try:
            if self._batch_sink is not None:
                self._batch_sink(lines)
            else:
                self._sink(lines[0])
        except Exception as exc:
            # Una tubería cerrada (o cualquier falla de la salida) no detiene el chat.
            self.broken = True
            log.warning("the server console is gone (%s); console lines are no longer written", exc)
