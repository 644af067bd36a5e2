"""Los sockets del verificador: conexiones con transcripción y esperas con plazo.

Cada lectura tiene un plazo absoluto y cada conexión cuenta contra un
presupuesto fijo, así el verificador termina solo aunque el servidor se cuelgue,
se caiga o cierre la conexión, y nunca abre más sockets de los anunciados.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from chatlib.check.text import Framing, Reframer, detect_framing, encode

Address = tuple[str, int]
RECV_SIZE = 65536


@dataclass(frozen=True, slots=True)
class Settings:
    """Plazos y límites; las pruebas usan plazos cortos, la red de un curso los por defecto."""

    timeout: float = 3.0
    settle: float = 0.3
    pause: float = 0.15
    max_connections: int = 48
    trace: Callable[[str], None] | None = None


def remaining(until: float) -> float:
    """Segundos que quedan hasta ``until``: varias esperas comparten un solo plazo."""
    return max(0.0, until - time.monotonic())


class BudgetExceeded(RuntimeError):
    """Se acabó el presupuesto de conexiones: el verificador no abre más."""


class Budget:
    """Cuenta las conexiones de toda la ejecución y cuántas hubo abiertas a la vez."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.open = 0
        self.peak = 0

    def take(self) -> None:
        if self.used >= self.limit:
            raise BudgetExceeded(f"the checker's budget of {self.limit} connections is used up")
        self.used += 1
        self.open += 1
        self.peak = max(self.peak, self.open)

    def release(self) -> None:
        self.open -= 1


class Hub:
    """Las conexiones de un escenario: esperar en una también lee las demás.

    Así cada ``send()`` de un servidor sin encuadre llega en su propio ``recv``
    aunque el verificador esté esperando en otro cliente: un socket que nadie
    lee acumula mensajes y los pega.
    """

    def __init__(self) -> None:
        self.links: list[Link] = []

    def pump(self, deadline: float, wanted: Link) -> bool:
        """Lee lo que llegue a cualquier conexión; ``True`` en cuanto algo llega a ``wanted``."""
        while not wanted.closed:
            now = time.monotonic()
            flushed = [link for link in self.links if link.flush_idle(now)]
            if wanted in flushed:
                return True
            listening = [link for link in self.links if not link.closed]
            wake = min([deadline, *(link.flush_at for link in listening if link.flush_at is not None)])
            try:
                ready, _, _ = select.select([link.sock for link in listening], [], [], max(0.0, wake - now))
            except OSError as exc:
                wanted._eof(f"connection error ({exc.strerror or exc})")
                return True
            for link in listening:
                if link.sock in ready:
                    link._receive()
            if wanted.sock in ready:
                return True
            # Aunque el plazo ya pasó, se miró una vez lo que había llegado.
            now = time.monotonic()
            if now >= deadline:
                return wanted.flush_idle(now)
        return False


class Link:
    """Una conexión TCP del verificador: envía, recibe y guarda todo lo visto.

    Las líneas recibidas nunca se consumen: las esperas buscan desde una marca
    (``mark()``), así las comprobaciones negativas ("esto no debió llegar")
    pueden revisar todo lo que llegó después de una acción.
    """

    def __init__(
        self,
        address: Address,
        label: str,
        settings: Settings,
        budget: Budget,
        framing_in: Framing,
        framing_out: Framing | None,
        hub: Hub | None = None,
        paced: bool = False,
    ) -> None:
        self.label = label
        self.settings = settings
        self.framing_in = framing_in
        self.paced = paced or framing_in == "bare"
        self.lines: list[str] = []
        self.closed = False
        self.close_reason = ""
        self._raw = b""
        self._reframer = Reframer(framing_out) if framing_out is not None else None
        self._last_send = 0.0
        budget.take()
        self._budget: Budget | None = budget
        try:
            self.sock = socket.create_connection(address, timeout=settings.timeout)
        except OSError:
            self._release()
            raise
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(settings.timeout)
        self.port: int = self.sock.getsockname()[1]
        self._partial_at: float | None = None
        self._hub = hub if hub is not None else Hub()
        self._hub.links.append(self)

    @property
    def framing_out(self) -> Framing | None:
        return self._reframer.framing if self._reframer is not None else None

    @property
    def saw_crlf(self) -> bool:
        return self._reframer is not None and self._reframer.saw_crlf

    def _trace(self, arrow: str, text: str) -> None:
        if self.settings.trace is not None:
            self.settings.trace(f"[{self.label}] {arrow} {text!r}")

    def _pump(self, deadline: float) -> bool:
        """Un ``recv`` como máximo hasta ``deadline``; ``False`` si no llegó nada."""
        if self.closed:
            return False
        return self._hub.pump(deadline, self)

    def _receive(self) -> None:
        """Un ``recv`` de un socket listo para leer."""
        try:
            data = self.sock.recv(RECV_SIZE)
        except OSError as exc:
            self._eof(f"connection error ({exc.strerror or exc})")
            return
        if not data:
            self._eof("the server closed the connection")
            return
        if self._reframer is None:
            self._raw += data
        else:
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        assert self._reframer is not None
        self._add(self._reframer.feed(data))
        self._partial_at = time.monotonic() if self._reframer.pending else None

    @property
    def flush_at(self) -> float | None:
        """Cuándo un trozo sin ``\\n`` habrá estado quieto ``settle`` segundos."""
        return None if self._partial_at is None else self._partial_at + self.settings.settle

    def flush_idle(self, now: float) -> bool:
        """Un trozo sin ``\\n`` que quedó quieto también es un mensaje (un prompt ``Name: ``)."""
        if self._reframer is None or self.flush_at is None or now < self.flush_at:
            return False
        self._partial_at = None
        self._add(self._reframer.flush())
        return True

    def _eof(self, reason: str) -> None:
        self.closed = True
        self.close_reason = reason
        self._trace("xx", reason)
        if self._reframer is None and self._raw:
            self._reframer = Reframer(detect_framing(self._raw))
            self._add(self._reframer.feed(self._raw))
        if self._reframer is not None:
            self._add(self._reframer.flush())

    def _add(self, lines: list[str]) -> None:
        for line in lines:
            self._trace("<-", line)
        self.lines.extend(lines)

    def detect(self) -> Framing | None:
        """Descubre el encuadre con lo primero que envía el servidor; ``None`` si no envió nada.

        Basta un ``\\n`` para saber que usa líneas; si llegan bytes sin ``\\n`` y
        luego hay silencio, cada ``send()`` del servidor es un mensaje.
        """
        if self._reframer is not None:
            return self._reframer.framing
        deadline = time.monotonic() + self.settings.timeout
        while not self._raw and not self.closed and time.monotonic() < deadline:
            self._pump(deadline)
        # Un servidor que envía sin parar y sin \n también termina: el plazo es absoluto.
        deadline = time.monotonic() + self.settings.timeout
        while self._reframer is None and b"\n" not in self._raw and not self.closed:
            if not self._pump(min(deadline, time.monotonic() + self.settings.settle)):
                break
        if self._reframer is None and self._raw:
            self._reframer = Reframer(detect_framing(self._raw))
            self._feed(self._raw)
        return self.framing_out

    def mark(self) -> int:
        """Posición actual de la transcripción, para buscar solo lo que llegue después."""
        return len(self.lines)

    def wait_for(
        self, predicate: Callable[[str], bool], since: int = 0, timeout: float | None = None
    ) -> str | None:
        """La primera línea desde ``since`` que cumple ``predicate``, o ``None`` al vencer el plazo."""
        deadline = time.monotonic() + (self.settings.timeout if timeout is None else timeout)
        checked = since
        polled = False
        while True:
            for line in self.lines[checked:]:
                if predicate(line):
                    return line
            checked = max(checked, len(self.lines))
            if self.closed or polled and time.monotonic() >= deadline:
                return None
            self._pump(deadline)
            polled = True

    def wait_lines(self, count: int, timeout: float | None = None) -> bool:
        """Espera hasta tener al menos ``count`` líneas; un prompt sin ``\\n`` ya cuenta."""
        deadline = time.monotonic() + (self.settings.timeout if timeout is None else timeout)
        while len(self.lines) + (self._partial_at is not None) < count:
            if self.closed or time.monotonic() >= deadline:
                return False
            self._pump(deadline)
        return True

    def listen(self, duration: float | None = None) -> None:
        """Recibe todo lo que llegue durante ``duration`` (por defecto el silencio ``settle``)."""
        deadline = time.monotonic() + (self.settings.settle if duration is None else duration)
        while not self.closed and time.monotonic() < deadline:
            self._pump(deadline)

    def quiet(self, duration: float | None = None, timeout: float | None = None) -> None:
        """Recibe hasta que pasen ``duration`` segundos sin nada nuevo (a lo más ``timeout``)."""
        gap = self.settings.settle if duration is None else duration
        deadline = time.monotonic() + (self.settings.timeout if timeout is None else timeout)
        while not self.closed and time.monotonic() < deadline:
            if not self._pump(min(deadline, time.monotonic() + gap)):
                return

    def since(self, mark: int) -> list[str]:
        return self.lines[mark:]

    def tail(self, count: int = 8) -> list[str]:
        """Las últimas líneas recibidas, como evidencia de un fallo."""
        shown = [f"{self.label} <- {line}" for line in self.lines[-count:]]
        if not self.lines:
            shown.append(f"{self.label} <- (nothing received)")
        if self.closed:
            shown.append(f"{self.label} xx {self.close_reason}")
        return shown

    def send(self, text: str, *, answered: bool = False) -> None:
        """Escribe un mensaje; si el servidor lee un mensaje por ``recv``, deja ``pause`` entre dos.

        Un servidor que compara ``data == ":q"`` necesita que cada mensaje llegue
        en su propio ``recv``: mientras se espera se sigue leyendo. ``answered``
        dice que el servidor ya respondió al anterior (ya lo leyó): no hace falta pausa.
        """
        if self.closed:
            return
        if self._reframer is not None and self._partial_at is not None:
            # El servidor espera una respuesta: lo que dejó sin \n era una pregunta.
            self._partial_at = None
            self._add(self._reframer.flush())
        if self.paced and not answered:
            ready_at = self._last_send + self.settings.pause
            while time.monotonic() < ready_at and not self.closed:
                self._pump(ready_at)
        self._trace("->", text)
        try:
            self.sock.sendall(encode(text, self.framing_in))
        except OSError as exc:
            self._eof(f"cannot send ({exc.strerror or exc})")
        self._last_send = time.monotonic()

    def _release(self) -> None:
        if self._budget is not None:
            self._budget.release()
            self._budget = None

    def close(self) -> None:
        self._release()
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True
        if not self.close_reason:
            self.close_reason = "closed by the checker"
