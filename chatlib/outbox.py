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
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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
OWNER_ROUNDS = 4
"""Rondas de envío de un dueño antes de dejar al ``Flusher`` lo que otros sigan agregando."""
_DONE, _LEFT, _DEAD = 0, 1, 2


class Outbox:
    """Buffer de salida de un cliente; seguro para llamarse desde cualquier hilo.

    Nadie hace ``send`` con el lock tomado: el hilo que encuentra el buffer
    libre se vuelve su *dueño* (``_sending``), suelta el lock, envía, y al
    volver envía también lo que otros hilos agregaron mientras tanto. Quien
    llega con un envío en curso solo agrega sus bytes a la cola y sigue: nunca
    espera a otro hilo que está dentro de un ``send`` (sin esto, cien hilos que
    escriben al mismo cliente hacen fila en su lock, y cada turno es un cambio
    de contexto). El orden de los bytes se mantiene porque solo el dueño envía
    y siempre lo más antiguo primero.

    La cola son dos buffers: ``_inflight``, que solo toca el dueño y del que
    envía sin copiar (``_pos`` marca cuánto salió), y ``_pending``, donde los
    demás agregan mientras tanto; cuando ``_inflight`` se vacía, se intercambian.

    ``idle`` resume en un solo campo lo que el camino rápido necesita saber (ni
    cerrado, ni sellado, ni en pausa, ni dueño, ni cola): un ``push`` a un
    cliente al día lee un atributo en vez de seis. Se apaga en cuanto una de
    esas condiciones se cumple y solo se vuelve a encender desde el estado
    completo (``_settle_locked``), así que nunca dice "libre" por error.
    """

    # Con ``__slots__`` los campos viven dentro del objeto: un ``push`` a mil
    # receptores toca menos memoria y cada cliente ocupa menos.
    __slots__ = (
        "_sock",
        "_flusher",
        "limit",
        "high_water",
        "low_water",
        "_on_overflow",
        "_lock",
        "_drained_cond",
        "_inflight",
        "_pos",
        "_pending",
        "_sending",
        "idle",
        "_watchers",
        "sent",
        "_last_progress",
        "_over_since",
        "_sent_at_over",
        "_stalled_at",
        "_sent_at_stall",
        "closed",
        "sealed",
        "paused",
        "_held_from",
        "stalled",
        "overflowed",
        "closed_reason",
    )

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
        # La condición se crea con la primera espera: la mayoría de los clientes nunca la usa.
        self._drained_cond: threading.Condition | None = None
        self._inflight: bytes | bytearray = b""
        self._pos = 0
        self._pending = bytearray()
        self._sending = False
        # ``idle``: un ``push`` ahora iría directo al socket (``Batch.flush`` lo lee sin lock, como pista).
        self.idle = True
        self._watchers = 0
        self.sent = 0
        self._last_progress = time.monotonic()
        self._over_since: float | None = None
        self._sent_at_over = 0
        self._stalled_at = 0.0
        self._sent_at_stall = 0
        self.closed = False
        self.sealed = False
        self.paused = False
        self._held_from = 0
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
            return self._backlog()

    def _backlog(self) -> int:
        return len(self._inflight) - self._pos + len(self._pending)

    def push(self, data: bytes, *, last: bool = False) -> bool:
        """Entrega ``data`` sin bloquear; devuelve ``False`` si el cliente ya no recibe.

        Con ``last=True`` (la despedida) el buffer se sella: nada de lo que otros
        hilos envíen después puede aparecer tras el adiós.

        El camino rápido (cliente al día: ``idle``) está escrito entero aquí, sin
        llamadas a otros métodos ni reloj, porque corre una vez por destinatario de
        cada línea: con mil receptores, cada bytecode de más se paga mil veces.
        Con la cola vacía el lector está al día; el reloj de su progreso se pone
        en marcha recién cuando se forma una cola (``_send_as_owner``, ``_enqueue_locked``).
        """
        # acquire/release explícitos en vez de ``with``: en CPython 3.11 cada ``with``
        # cuesta unos 0,3 µs más.
        lock = self._lock
        lock.acquire()
        if self.idle:
            # Lo mismo que ``_claim_locked`` cuando acierta: también la despedida va por aquí.
            self.idle = False
            self._sending = True
            self.sealed = last
            lock.release()
        else:
            lock.release()
            queued = self._push_queued(data, last)
            if queued is not None:
                return queued
        # Este hilo es el dueño y la cola está vacía: un send fuera del lock.
        try:
            sent = self._sock.send(data)
        except OSError as exc:
            sent = self._send_error(exc)
        if sent == len(data):
            lock.acquire()
            try:
                # Mientras enviaba, otro hilo pudo encolar, cerrar, pausar o esperar el vaciado.
                if not (self._pending or self.closed or self.paused or self._watchers):
                    self.sent += sent
                    self._sending = False
                    # Sellado (la despedida salió entera): ya nada más sale, así que no queda libre.
                    self.idle = not self.sealed
                    return True
            finally:
                lock.release()
        elif sent < 0:
            return False
        return self._send_as_owner(data, sent=sent) != _DEAD

    def _claim_locked(self, last: bool) -> bool | None:
        """Con el lock: ¿este hilo pasa a ser el dueño, con la cola vacía?

        ``True``: sí (y el buffer queda sellado si ``last``); ``False``: hay cola,
        pausa u otro dueño; ``None``: el buffer ya no acepta nada.
        """
        if self.closed or self.sealed:
            return None
        if self.paused or self._sending or self._inflight or self._pending:
            return False
        self.sealed = last
        self._sending = True
        self.idle = False
        return True

    def _push_queued(self, data: bytes, last: bool) -> bool | None:
        """``push`` cuando hay cola, pausa, otro dueño o ``last``: se encola (o se prueba un envío).

        ``None``: este hilo pasó a ser el dueño con la cola vacía, y ``push`` envía ``data``.
        """
        probed = False
        while True:
            probe = False
            with self._lock:
                owner = self._claim_locked(last)
                if owner is None:
                    return False
                if owner:
                    return None
                if not probed and self._backlog() + len(data) > self.limit:
                    # Antes de juzgar al lector se mira cuánto avanzó: un send más, solo aquí.
                    probe = self._take_locked()
                if not probe:
                    self.sealed = last
                    # Otro hilo envía, el Flusher vacía la cola o hay pausa: solo se encola.
                    queued = self._enqueue_locked(data)
            if not probe:
                break
            probed = True
            if self._send_as_owner() == _DEAD:
                return False
        if not queued and self._on_overflow is not None:
            self._on_overflow(self)
        return queued

    def _owner_send(self, view: bytes | memoryview) -> int:
        """Un ``send`` del dueño, fuera del lock; -1 si el socket murió (y el buffer se cierra)."""
        try:
            return self._sock.send(view)
        except OSError as exc:
            return self._send_error(exc)

    def _send_error(self, exc: OSError) -> int:
        """Un ``send`` del dueño falló: 0 si solo no había espacio, -1 si el socket murió."""
        if isinstance(exc, (BlockingIOError, InterruptedError)):
            return 0
        with self._lock:
            self._sending = False
            self._close_locked(f"send failed ({exc.strerror or exc})")
        return -1

    def _enqueue_locked(self, data: bytes) -> bool:
        """Agrega a la cola; ``False`` si el lector pasó el límite y se cortó."""
        backlog = self._backlog()
        if not backlog:
            self._last_progress = time.monotonic()  # se forma una cola: el lector estaba al día
        total = backlog + len(data)
        if total > self.limit and self._must_cut(total):
            self.overflowed = True
            self._close_locked(f"stopped reading (more than {self.limit} bytes queued)")
            return False
        self._pending += data
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

    def _send_as_owner(self, data: bytes | None = None, *, from_flusher: bool = False, sent: int = -1) -> int:
        """Envía como dueño, sin el lock, hasta vaciar la cola o llenar el núcleo.

        ``data`` son bytes nuevos con la cola vacía (el camino rápido); sin
        ``data`` se envía la cola. Retorna ``_DONE`` (nada que vigilar),
        ``_LEFT`` (quedó cola) o ``_DEAD`` (el socket murió). Si queda cola y
        quien llama no es el ``Flusher``, se le pide que la vacíe cuando el
        socket admita escritura. Tras ``OWNER_ROUNDS`` rondas el resto queda
        al ``Flusher``: quien envía un lote no trabaja sin fin para otros.
        ``sent`` >= 0: el primer ``send`` de ``data`` ya se hizo y entregó eso.
        """
        rounds = 0
        while True:
            if sent < 0:
                sent = self._owner_send(data if data is not None else memoryview(self._inflight)[self._pos :])
                if sent < 0:
                    return _DEAD
            rounds += 1
            with self._lock:
                if (
                    data is not None
                    and sent == len(data)
                    and not (self._pending or self.closed or self._watchers or self.stalled)
                    and self._over_since is None
                ):
                    # Bytes nuevos que salieron enteros, nadie agregó nada y no hay estado de progreso
                    # que tocar: como el final de ``push`` (la despedida, la confirmación del saldo).
                    self.sent += sent
                    self._sending = False
                    self._settle_locked()
                    return _DONE
                if sent:
                    self.sent += sent
                if sent or data is not None:
                    # Con bytes nuevos la cola estaba vacía: hasta aquí el lector estaba al día.
                    self._last_progress = time.monotonic()
                if self.closed:
                    self._sending = False
                    return _DONE
                if data is not None:
                    if sent < len(data):
                        # Lo que no entró queda primero en la cola, sin copiarlo.
                        self._inflight, self._pos = data, sent
                    data = None
                else:
                    self._pos += sent
                if self._pos >= len(self._inflight):
                    self._inflight, self._pos = b"", 0
                    if self._pending and not self.paused and rounds < OWNER_ROUNDS:
                        # Lo que otros agregaron mientras este hilo enviaba.
                        self._inflight, self._pending = self._pending, bytearray()
                        sent = -1
                        continue
                self._sending = False
                self._progress_locked()
                self._settle_locked()
                left = bool(self._inflight or self._pending) and not self.paused
            if left and not from_flusher:
                self._flusher.schedule(self)
            return _LEFT if left else _DONE

    def _settle_locked(self) -> None:
        """Recalcula ``idle`` desde el estado completo (al terminar un envío o una pausa)."""
        self.idle = not (
            self.closed or self.sealed or self.paused or self._sending or self._inflight or self._pending
        )

    def _progress_locked(self) -> None:
        """Actualiza el estado del lector según su cola (después de cada envío)."""
        size = self._backlog()
        if not size and self._over_since is None and not self.stalled and not self._watchers:
            return  # el caso común: todo salió y nadie espera
        if size <= self.limit:
            self._over_since = None
        if size <= self.low_water:
            self.stalled = False
            if not self._sending and self._drained_cond is not None:
                self._drained_cond.notify_all()
        elif self.stalled:
            now = time.monotonic()
            # Un lector que se recupera vuelve a frenar a quien inunda.
            if now - self._stalled_at >= NO_PROGRESS and (
                self.sent - self._sent_at_stall >= MIN_DRAIN_RATE / 2 * (now - self._stalled_at)
            ):
                self.stalled = False

    def _take_locked(self) -> bool:
        """Si nadie envía y hay cola, este hilo pasa a ser el dueño (``True``) y luego la envía."""
        if self.closed or self.paused or self._sending or not (self._inflight or self._pending):
            return False
        self._sending = True
        self.idle = False
        if not self._inflight:
            self._inflight, self._pending, self._pos = self._pending, bytearray(), 0
        return True

    def pause(self) -> None:
        """Retiene todo lo que llegue (en orden) hasta ``resume``; nada sale mientras tanto."""
        with self._lock:
            self.paused = True
            self.idle = False
            # En pausa nadie toma la cola: lo que ya estaba en ella queda en ``_pending[:_held_from]``.
            self._held_from = len(self._pending)

    def discard_held(self) -> None:
        """Descarta lo retenido por ``pause`` (nada salió aún); lo encolado antes de la pausa sigue."""
        with self._lock:
            if self.paused:
                del self._pending[self._held_from :]

    def resume(self, first: bytes = b"") -> None:
        """Libera lo retenido sin bloquear: sale lo que ya estaba en cola, ``first`` y lo retenido.

        ``first`` es la línea que debe llegar antes que todo lo que otros
        enviaron durante la pausa (la confirmación del saldo al entrar al
        chat). Sin cola ni envío en curso, el caso de cada ingreso, sale con
        un ``send`` directo, sin pasar por la cola.
        """
        with self._lock:
            self.paused = False
            mark = self._held_from
            # Sellado antes de la pausa, el adiós ya está en cola o salió: nada va después.
            if self.closed or (self.sealed and len(self._pending) <= mark):
                first = b""
            fresh = bool(first) and not (self.sealed or self._sending or self._inflight or self._pending)
            if fresh:
                self._sending = True
            elif first:
                self._pending[mark:mark] = first
            took = fresh or self._take_locked()
            if not took:
                self._settle_locked()
        if took:
            self._send_as_owner(first if fresh else None)

    def flush(self) -> bool:
        """Lo llama el ``Flusher`` cuando el socket admite escritura; ``True`` si ya no debe vigilarlo.

        Si otro hilo está enviando, ese dueño vuelve a pedir al ``Flusher`` lo que quede.
        """
        with self._lock:
            if not self._take_locked():
                return True
        return self._send_as_owner(from_flusher=True) != _LEFT

    @property
    def congested(self) -> bool:
        """Cola sobre el nivel alto y el destinatario no se declaró atascado."""
        if not (self._inflight or self._pending):
            return False  # el caso común, barato: se pregunta tras cada entrega
        return not self.stalled and self._backlog() > self.high_water

    def wait_for_room(self, should_stop: Callable[[], bool] = lambda: False) -> bool:
        """Control de flujo: espera a que la cola baje del nivel bajo mientras el lector avance.

        La llama el hilo del emisor después de repartir su lote, sin locks
        compartidos: el emisor deja de leer su socket y TCP lo frena. La cola
        la vacían el ``Flusher`` y esta espera (un ``send`` por tramo). Si el
        destinatario no drena un byte en ``NO_PROGRESS`` segundos, o tras
        ``PROGRESS_WINDOW`` drenó a menos de la mitad de ``MIN_DRAIN_RATE``,
        queda ``stalled`` y la espera termina (nadie más lo espera hasta que
        vuelva a avanzar). ``should_stop`` corta la espera (cierre del servidor).
        """
        with self._lock:
            started, sent_at_start = time.monotonic(), self.sent
        while True:
            with self._lock, self._watching():
                if self.closed or self._backlog() <= self.low_water:
                    return True
                if self.stalled or should_stop():
                    return False
                self._drained().wait(WAIT_SLICE)
                # El aviso del selector llega recién con un tercio del buffer libre:
                # un send directo ve antes si el lector avanzó.
                took = self._take_locked()
            if took:
                self._send_as_owner()
            with self._lock:
                now = time.monotonic()
                waited = now - started
                slow = waited >= PROGRESS_WINDOW and (self.sent - sent_at_start < MIN_DRAIN_RATE / 2 * waited)
                # Con la cola ya bajo el nivel bajo no hay a quién declarar atascado.
                drained = self._backlog() <= self.low_water
                if not self.closed and not drained and (slow or now - self._last_progress >= NO_PROGRESS):
                    self.stalled = True
                    self._stalled_at, self._sent_at_stall = now, self.sent
                    return False

    def wait_drained(self, timeout: float) -> bool:
        """Espera a que la cola se vacíe y nadie esté enviando (antes de un cierre ordenado)."""
        with self._lock:
            if self._is_drained():
                return True  # el caso común: no hay nada que esperar
            with self._watching():
                return self._drained().wait_for(self._is_drained, max(0.0, timeout))

    def _is_drained(self) -> bool:
        return self.closed or not (self._inflight or self._pending or self._sending)

    def _drained(self) -> threading.Condition:
        """La condición de ``_lock`` que avisa cuando la cola baja (con el lock tomado)."""
        if self._drained_cond is None:
            self._drained_cond = threading.Condition(self._lock)
        return self._drained_cond

    @contextmanager
    def _watching(self) -> Iterator[None]:
        """Cuenta a quien espera ``_drained`` (con el lock tomado) para no avisar en vano."""
        self._watchers += 1
        try:
            yield
        finally:
            self._watchers -= 1

    def close(self, reason: str = "closed") -> None:
        """Deja de aceptar datos; después de esto nadie vuelve a usar el socket."""
        with self._lock:
            self._close_locked(reason)

    def _close_locked(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.idle = False
            self.closed_reason = reason
            # Se reemplazan, no se vacían: el dueño puede estar enviando desde ``_inflight``.
            self._inflight, self._pos, self._pending = b"", 0, bytearray()
            if self._drained_cond is not None:
                self._drained_cond.notify_all()


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
