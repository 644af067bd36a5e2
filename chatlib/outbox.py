"""Entrega de bytes a un cliente sin que un lector lento frene a los demás.

Camino rápido: el hilo que produce el mensaje lo envía él mismo con
``MSG_DONTWAIT`` mientras el buffer del kernel del destinatario tenga espacio;
no se despierta ningún hilo por mensaje. Camino lento: si el kernel no acepta
todo, el resto queda en una cola acotada del destinatario y un único hilo
escritor (``Flusher``), que vigila con ``selectors`` los sockets con cola, la
vacía cuando el socket vuelve a aceptar datos. Si la cola supera su límite el
cliente dejó de leer: se le desconecta en vez de acumular memoria sin fin.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

DEFAULT_QUEUE_LIMIT = 1 << 20
# Sobre este nivel de cola el emisor espera un poco (control de flujo); bajo
# LOW_WATER la espera termina. Un destinatario que no baja a tiempo queda
# marcado como atascado y nadie vuelve a esperarlo.
HIGH_WATER = 256 << 10
LOW_WATER = 64 << 10


class Outbox:
    """Buffer de salida de un cliente; seguro para llamarse desde cualquier hilo.

    El lock es propio de este destinatario (nunca uno global), así que enviar
    con él tomado solo ordena a quienes escriben a este mismo cliente, que es
    justamente lo necesario para que sus líneas no se mezclen.
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
        self._on_overflow = on_overflow
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._pending = bytearray()
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
            if not self._pending and not self.paused:
                sent = self._send_now(data)
                if sent < 0:
                    return False
                data = data[sent:]
                if not data:
                    return True
                schedule = True
            if len(self._pending) + len(data) > self.limit:
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

    def _send_now(self, data: bytes) -> int:
        """Un ``send`` no bloqueante; -1 si el socket murió (y se cierra el buffer)."""
        try:
            return self._sock.send(data, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            self._close_locked(f"send failed ({exc.strerror or exc})")
            return -1

    def pause(self) -> None:
        """Retiene todo lo que llegue (en orden) hasta ``resume``; nada sale mientras tanto."""
        with self._lock:
            self.paused = True

    def resume(self) -> None:
        """Libera lo retenido: primero lo más antiguo, sin bloquear."""
        with self._lock:
            self.paused = False
            if self.closed or not self._pending:
                return
            sent = self._send_now(bytes(self._pending))
            if sent < 0:
                return
            del self._pending[:sent]
            if not self._pending:
                return
        self._flusher.schedule(self)

    def flush(self) -> bool:
        """Lo llama el ``Flusher`` cuando el socket admite escritura; ``True`` si ya no hay cola."""
        with self._lock:
            if self.closed:
                return True
            if self._pending and not self.paused:
                sent = self._send_now(bytes(self._pending))
                if sent < 0:
                    return True
                del self._pending[:sent]
            if len(self._pending) <= LOW_WATER:
                self._drained.notify_all()
            if not self._pending:
                self.stalled = False
                return True
            return False

    @property
    def congested(self) -> bool:
        """Cola sobre ``HIGH_WATER`` y el destinatario aún no se declaró atascado."""
        return not self.stalled and len(self._pending) > HIGH_WATER

    def wait_for_room(self, timeout: float) -> bool:
        """Control de flujo: espera a que la cola baje de ``LOW_WATER``.

        La llama el hilo del emisor después de repartir su lote, sin locks
        compartidos: el emisor que inunda deja de leer su socket un momento y
        TCP lo frena, en vez de acumular megabytes para un lector que va algo
        lento. Si el plazo vence, el destinatario queda ``stalled``: no se le
        vuelve a esperar y, si no lee, el límite de la cola lo desconecta.
        """
        with self._lock:
            ok = self._drained.wait_for(lambda: self.closed or len(self._pending) <= LOW_WATER, timeout)
            if not ok:
                self.stalled = True
            return ok

    def wait_drained(self, timeout: float) -> bool:
        """Espera a que el camino lento se vacíe (por ejemplo antes de un cierre ordenado)."""
        with self._lock:
            return self._drained.wait_for(lambda: self.closed or not self._pending, timeout)

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
    un ``selector`` no debe modificarse desde varios hilos a la vez.
    """

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._incoming: list[Outbox] = []
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
            for key, _ in self._selector.select():
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

    def _register(self, outbox: Outbox) -> None:
        if outbox.closed:
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
