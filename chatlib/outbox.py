"""Entrega de bytes a un cliente sin que un lector lento frene a los demás.

Todo socket de cliente es no bloqueante durante toda su vida, así que un
``send`` nunca espera: entrega lo que el núcleo acepta en ese momento, igual
en Windows, macOS y Linux. Camino rápido: el hilo
que produce el mensaje lo envía él mismo mientras el buffer del núcleo del
destinatario tenga espacio; no se despierta ningún hilo por mensaje. Camino
lento: si el núcleo no acepta todo, el resto queda en una cola acotada del
destinatario y un único hilo escritor (``Flusher``), que vigila con
``selectors`` los sockets con cola, la vacía cuando el socket vuelve a aceptar
datos.

Control de flujo por progreso: quien envía a un destinatario con mucha cola
espera mientras ese destinatario siga vaciándola (así TCP frena a quien
inunda, no al que lee); un destinatario que no avanza queda ``stalled`` y nadie
lo espera. Se corta a quien se detuvo del todo al pasar el límite de la cola,
y a quien lleva ``STALL_GRACE`` segundos sobre el límite drenando menos de
``MIN_DRAIN_RATE``; un lector que drena al menos eso no se corta nunca.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

DEFAULT_QUEUE_LIMIT = 1 << 20
# Sobre este nivel de cola el emisor espera (control de flujo); bajo LOW_WATER
# la espera termina. Para colas chicas se usan fracciones del límite.
HIGH_WATER = 512 << 10
LOW_WATER = 256 << 10
MIN_DRAIN_RATE = 16 << 10
"""Bytes/s: un lector que drena al menos esto (unas 300 líneas/s) nunca se corta."""
PROGRESS_WINDOW = 2.0
"""Segundos de espera tras los que se juzga la tasa media de un destinatario que se espera."""
NO_PROGRESS = 1.5
"""Segundos sin drenar un byte: el destinatario se detuvo (en loopback el núcleo libera
espacio a saltos de hasta ~16 KiB, así que un lector de 16 KiB/s avanza al menos cada segundo)."""
STALL_GRACE = 5.0
"""Segundos sobre el límite, drenando menos de ``MIN_DRAIN_RATE``, antes de cortar."""
HARD_LIMIT_FACTOR = 4
"""Tope absoluto de la cola (múltiplo del límite): nada crece sin cota."""
WAIT_SLICE = 0.02
SELECT_LIMIT = 500
"""Con ``select.select`` (Windows: 512 sockets por llamada) el ``Flusher`` vigila a lo más tantos."""
SELECT_RETRY = 0.05


class Outbox:
    """Buffer de salida de un cliente; seguro para llamarse desde cualquier hilo.

    El lock es propio de este destinatario (nunca uno global), así que enviar
    con él tomado solo ordena a quienes escriben a este mismo cliente, que es
    justamente lo necesario para que sus líneas no se mezclen. ``sock`` debe
    ser no bloqueante: así nadie espera el lock más que lo que dura un ``send``.
    """

    def __init__(
        self,
        sock: socket.socket,
        flusher: Flusher,
        limit: int = DEFAULT_QUEUE_LIMIT,
        on_overflow: Callable[[Outbox], None] | None = None,
    ) -> None:
        self._sock = sock
        self._flusher = flusher
        self.limit = limit
        self.high_water = min(HIGH_WATER, limit // 2)
        self.low_water = min(LOW_WATER, self.high_water // 2)
        self._on_overflow = on_overflow
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._pending = bytearray()
        self.sent = 0
        self._last_progress = time.monotonic()
        self._over_since: float | None = None
        self._sent_at_over = 0
        self._stalled_at = 0.0
        self._sent_at_stall = 0
        self.closed = False
        self.sealed = False
        self.paused = False
        self.stalled = False
        self.overflowed = False
        self.closed_reason: str | None = None

    def fileno(self) -> int:
        """Descriptor del socket (para registrarlo en el selector)."""
        return self._sock.fileno()

    @property
    def queued(self) -> int:
        """Bytes esperando en el camino lento."""
        with self._lock:
            return len(self._pending)

    def push(self, data: bytes, *, last: bool = False) -> bool:
        """Entrega ``data`` sin bloquear; devuelve ``False`` si el cliente ya no recibe.

        Con ``last=True`` (la despedida) el buffer se sella: nada de lo que otros
        hilos envíen después puede aparecer tras el adiós.
        """
        overflowed = False
        schedule = False
        with self._lock:
            if self.closed or self.sealed:
                return False
            self.sealed = last
            if not self.paused and not self._pending:
                sent = self._send_now(data)
                if sent < 0:
                    return False
                data = data[sent:]
                if not data:
                    return True
                schedule = True
            if len(self._pending) + len(data) > self.limit:
                # Antes de juzgar al lector se mira cuánto avanzó (un send más, solo aquí).
                self._flush_locked()
            total = len(self._pending) + len(data)
            if total > self.limit and self._must_cut(total):
                overflowed = self.overflowed = True
                self._close_locked(f"stopped reading (more than {self.limit} bytes queued)")
            else:
                self._pending += data
        if overflowed:
            if self._on_overflow is not None:
                self._on_overflow(self)
            return False
        if schedule:
            self._flusher.schedule(self)
        return True

    def _must_cut(self, total: int) -> bool:
        """¿Se corta a este lector ahora que su cola pasaría el límite?"""
        now = time.monotonic()
        if self._over_since is None:
            self._over_since, self._sent_at_over = now, self.sent
        if total > self.limit * HARD_LIMIT_FACTOR:
            return True
        if self.stalled and now - self._last_progress >= NO_PROGRESS:
            return True  # se detuvo del todo: nadie lo espera y no avanza
        elapsed = now - self._over_since
        return elapsed >= STALL_GRACE and self.sent - self._sent_at_over < MIN_DRAIN_RATE * elapsed

    def _send_now(self, data: bytes | bytearray) -> int:
        """Un ``send`` sobre el socket no bloqueante; -1 si el socket murió (y se cierra el buffer)."""
        try:
            sent = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            self._close_locked(f"send failed ({exc.strerror or exc})")
            return -1
        if sent:
            self.sent += sent
            self._last_progress = time.monotonic()
        return sent

    def _flush_locked(self) -> None:
        """Envía lo que el núcleo acepte de la cola y actualiza el estado del lector."""
        if self._pending and not self.paused:
            sent = self._send_now(self._pending)
            if sent < 0:
                return
            del self._pending[:sent]
        size = len(self._pending)
        if size <= self.limit:
            self._over_since = None
        if size <= self.low_water:
            self.stalled = False
            self._drained.notify_all()
        elif self.stalled:
            now = time.monotonic()
            # Un lector que se recupera vuelve a frenar a quien inunda.
            if now - self._stalled_at >= NO_PROGRESS and (
                self.sent - self._sent_at_stall >= MIN_DRAIN_RATE / 2 * (now - self._stalled_at)
            ):
                self.stalled = False

    def pause(self) -> None:
        """Retiene todo lo que llegue (en orden) hasta ``resume``; nada sale mientras tanto."""
        with self._lock:
            self.paused = True

    def discard_held(self) -> None:
        """Descarta lo retenido por ``pause`` (nada de eso salió todavía)."""
        with self._lock:
            if self.paused:
                self._pending.clear()

    def resume(self) -> None:
        """Libera lo retenido: primero lo más antiguo, sin bloquear."""
        with self._lock:
            self.paused = False
            if self.closed or not self._pending:
                return
            self._flush_locked()
            if not self._pending:
                return
        self._flusher.schedule(self)

    def flush(self) -> bool:
        """Lo llama el ``Flusher`` cuando el socket admite escritura; ``True`` si ya no hay cola."""
        with self._lock:
            if self.closed:
                return True
            self._flush_locked()
            return not self._pending

    @property
    def congested(self) -> bool:
        """Cola sobre el nivel alto y el destinatario no se declaró atascado."""
        return not self.stalled and len(self._pending) > self.high_water

    def wait_for_room(self, should_stop: Callable[[], bool] = lambda: False) -> bool:
        """Control de flujo: espera a que la cola baje del nivel bajo mientras el lector avance.

        La llama el hilo del emisor después de repartir su lote, sin locks
        compartidos: el emisor deja de leer su socket y TCP lo frena. Si el
        destinatario no drena un byte en ``NO_PROGRESS`` segundos, o tras
        ``PROGRESS_WINDOW`` drenó a menos de la mitad de ``MIN_DRAIN_RATE``,
        queda ``stalled`` y la espera termina (nadie más lo espera hasta que
        vuelva a avanzar). ``should_stop`` corta la espera (cierre del servidor).
        """
        with self._lock:
            started, sent_at_start = time.monotonic(), self.sent
            while True:
                if self.closed or len(self._pending) <= self.low_water:
                    return True
                if self.stalled or should_stop():
                    return False
                self._drained.wait(WAIT_SLICE)
                self._flush_locked()
                now = time.monotonic()
                waited = now - started
                slow = waited >= PROGRESS_WINDOW and (self.sent - sent_at_start < MIN_DRAIN_RATE / 2 * waited)
                if slow or now - self._last_progress >= NO_PROGRESS:
                    self.stalled = True
                    self._stalled_at, self._sent_at_stall = now, self.sent
                    return False

    def wait_drained(self, timeout: float) -> bool:
        """Espera a que el camino lento se vacíe (por ejemplo antes de un cierre ordenado)."""
        with self._lock:
            return self._drained.wait_for(lambda: self.closed or not self._pending, max(0.0, timeout))

    def close(self, reason: str = "closed") -> None:
        """Deja de aceptar datos; después de esto nadie vuelve a usar el socket."""
        with self._lock:
            self._close_locked(reason)

    def _close_locked(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.closed_reason = reason
            self._pending.clear()
            self._drained.notify_all()


class Flusher:
    """El único hilo escritor: vacía las colas de los clientes cuyo kernel estaba lleno.

    Solo trabaja en el camino lento. Los registros llegan desde otros hilos por
    una lista protegida y un ``socketpair`` que despierta al selector, porque
    un ``selector`` no debe modificarse desde varios hilos a la vez. Si el
    selector es ``select()`` (Windows) y ya vigila ``SELECT_LIMIT`` sockets, las
    colas que sobran esperan en una fila y se reintentan cada ``SELECT_RETRY``.
    """

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._incoming: list[Outbox] = []
        self._waiting: deque[Outbox] = deque()
        self._limit = SELECT_LIMIT if isinstance(self._selector, selectors.SelectSelector) else None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="chatlib-flusher", daemon=True)

    def start(self) -> None:
        """Inicia el hilo escritor."""
        self._thread.start()

    def schedule(self, outbox: Outbox) -> None:
        """Pide vaciar ``outbox`` cuando su socket admita escritura."""
        with self._lock:
            self._incoming.append(outbox)
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass

    def stop(self, timeout: float = 1.0) -> None:
        """Detiene el hilo, lo espera y cierra sus descriptores."""
        with self._lock:
            self._stopping = True
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
                incoming, self._incoming = self._incoming, []
            for pending in incoming:
                self._register(pending)
            self._retry_waiting()
            for key, _ in self._selector.select(SELECT_RETRY if self._waiting else None):
                if key.data is None:
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except (BlockingIOError, OSError):
                        pass
                    continue
                ready: Outbox = key.data
                if ready.flush():
                    self._unregister(key.fd)

    def _retry_waiting(self) -> None:
        for _ in range(len(self._waiting)):
            outbox = self._waiting.popleft()
            if not outbox.flush():
                self._register(outbox)

    def _register(self, outbox: Outbox) -> None:
        if outbox.closed:
            return
        if self._limit is not None and len(self._selector.get_map()) > self._limit:
            self._waiting.append(outbox)
            return
        try:
            fd = outbox.fileno()
        except OSError:
            return
        if fd < 0:
            return
        # Un descriptor cerrado y reutilizado puede seguir en el mapa del selector.
        self._unregister(fd)
        try:
            self._selector.register(fd, selectors.EVENT_WRITE, outbox)
        except (OSError, ValueError) as exc:
            log.debug("cannot watch fd %s: %s", fd, exc)

    def _unregister(self, fd: int) -> None:
        try:
            self._selector.unregister(fd)
        except (KeyError, ValueError, OSError):
            pass
