"""Generadores de carga: muchos clientes de chat en un solo hilo con ``selectors``.

Un único proceso maneja cientos de sockets no bloqueantes, así el generador de
carga no necesita un hilo por cliente (que competiría con el servidor por los
dos núcleos). Cada escenario es una función que recibe la dirección de un
servidor ya iniciado y devuelve un resultado con los números y las pérdidas:
todo mensaje enviado se cuenta en cada receptor y lo que falte es un fallo.

Todos los bucles están acotados en cantidad y en tiempo (``deadline``).
"""

from __future__ import annotations

import errno
import random
import selectors
import socket
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from chatlib import protocol as proto

Address = tuple[str, int]

# Los textos del protocolo salen de ``chatlib.protocol`` (ya codificados, porque
# el generador trabaja con bytes); las respuestas se reconocen con sus parsers.
WELCOME: Final = proto.WELCOME.encode()
GOODBYE: Final = proto.GOODBYE.encode()
ASK_IDENTIFIER: Final = proto.ASK_IDENTIFIER.encode()
ASK_BALANCE: Final = proto.ASK_BALANCE.encode()
INSUFFICIENT: Final = proto.INSUFFICIENT_FUNDS.encode()
SERVER_PREFIX: Final = proto.SERVER_PREFIX.encode()
CONNECTED_SUFFIX: Final = proto.connected_line("").removeprefix(proto.SERVER_PREFIX).encode()

RECV_SIZE: Final = 1 << 18
SENDER: Final = "snd"


class BenchError(RuntimeError):
    """Un escenario no pudo ni empezar (por ejemplo, los clientes no lograron unirse)."""


# --- un cliente -------------------------------------------------------------


class Client:
    """Un socket no bloqueante con su estado de protocolo y sus buffers.

    ``on_line`` recibe cada línea completa (sin ``\\n``) una vez que el cliente
    se unió al chat; antes de eso el propio cliente responde el saludo.
    """

    def __init__(self, loop: Loop, name: str, balance: int = 1000, rcvbuf: int | None = None) -> None:
        self.loop = loop
        self.name = name
        self.balance = balance
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.state = "connecting"  # connecting, greeting, funding, joined, closed
        self.inbuf = b""
        self.outbuf = bytearray()
        self.reading = True
        self.on_line: Callable[[Client, bytes, int], None] | None = None
        self.on_data: Callable[[Client, bytes, int], None] | None = None
        self.on_joined: Callable[[Client], None] | None = None
        self.on_closed: Callable[[Client], None] | None = None
        self.error: str | None = None
        self.eof = False
        self.said_goodbye = False
        self.unexpected: list[bytes] = []
        self._events = 0

    # conexión y registro en el selector

    def connect(self, address: Address) -> None:
        """Inicia un ``connect`` no bloqueante."""
        code = self.sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS):
            self.fail(f"connect: {errno.errorcode.get(code, code)}")
            return
        self.loop.clients.add(self)
        self._update(selectors.EVENT_WRITE)

    def _update(self, events: int) -> None:
        if events == self._events or self.state == "closed":
            return
        if self._events == 0:
            self.loop.selector.register(self.sock, events, self)
        elif events == 0:
            self.loop.selector.unregister(self.sock)
        else:
            self.loop.selector.modify(self.sock, events, self)
        self._events = events

    def _wanted(self) -> int:
        events = selectors.EVENT_READ if self.reading else 0
        if self.outbuf or self.state == "connecting":
            events |= selectors.EVENT_WRITE
        return events

    def stop_reading(self) -> None:
        """Simula un lector que se cuelga: el socket deja de leerse."""
        self.reading = False
        self._update(self._wanted())

    def resume_reading(self) -> None:
        """Vuelve a leer (para ver si el servidor cortó la conexión)."""
        self.reading = True
        self._update(self._wanted())

    # escritura

    def send(self, data: bytes) -> None:
        """Escribe lo que el kernel acepte ahora y deja el resto en ``outbuf``."""
        if self.state == "closed":
            return
        if not self.outbuf and self.state != "connecting":
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self.fail(f"send: {exc}")
                return
            data = data[sent:]
        if data:
            self.outbuf += data
        self._update(self._wanted())

    def on_writable(self) -> None:
        """El socket admite datos (o terminó el ``connect``)."""
        if self.state == "connecting":
            code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self.fail(f"connect: {errno.errorcode.get(code, code)}")
                return
            self.state = "greeting"
        if self.outbuf:
            try:
                sent = self.sock.send(self.outbuf)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self.fail(f"send: {exc}")
                return
            del self.outbuf[:sent]
        self._update(self._wanted())

    # lectura

    def on_readable(self) -> None:
        """Lee un bloque y entrega las líneas completas."""
        try:
            data = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.fail(f"recv: {exc}")
            return
        # Instante en que select() vio el socket listo: no incluye lo que tarda
        # este proceso en recorrer los demás sockets listos antes que este.
        now = self.loop.now_ns
        self.loop.last_rx = time.perf_counter_ns()
        if not data:
            self.eof = True
            self.close()
            return
        if self.on_data is not None and self.state == "joined" and not self.inbuf:
            # Camino rápido para la inundación: se cuentan bytes, no líneas.
            self.on_data(self, data, now)
            return
        *lines, self.inbuf = (self.inbuf + data).split(b"\n")
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if self.state == "joined":
                if self.on_line is not None:
                    self.on_line(self, line, now)
            else:
                self._handshake(line)
            if self.state == "closed":
                return

    def _handshake(self, line: bytes) -> None:
        if line == ASK_IDENTIFIER and self.state == "greeting":
            self.send(self.name.encode() + b"\n")
            self.state = "funding"
        elif line == ASK_BALANCE and self.state == "funding":
            self.send(b"%d\n" % self.balance)
        elif self.state == "funding" and proto.is_balance_set_line(line.decode(errors="replace")):
            self.state = "joined"
            self.loop.joined += 1
            if self.on_joined is not None:
                self.on_joined(self)
        elif line != WELCOME and not line.endswith(CONNECTED_SUFFIX):
            self.unexpected.append(line)

    def fail(self, reason: str) -> None:
        """Marca el cliente como fallido y lo cierra."""
        if self.error is None:
            self.error = reason
        self.close()

    def close(self) -> None:
        """Cierra el socket (idempotente)."""
        if self.state == "closed":
            return
        if self._events:
            self.loop.selector.unregister(self.sock)
            self._events = 0
        self.state = "closed"
        self.sock.close()
        self.loop.clients.discard(self)
        if self.on_closed is not None:
            self.on_closed(self)


# --- el bucle ---------------------------------------------------------------


class Loop:
    """Un ``selector`` y los clientes registrados en él."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.clients: set[Client] = set()
        self.joined = 0
        self.last_rx = time.perf_counter_ns()
        self.now_ns = self.last_rx

    def run(
        self,
        until: Callable[[], bool],
        timeout: float,
        tick: Callable[[float], float | None] | None = None,
    ) -> bool:
        """Atiende eventos hasta que ``until()`` sea cierto o venza ``timeout``.

        ``tick(now)`` permite acciones programadas (el emisor a ritmo fijo):
        devuelve el próximo instante en que quiere volver a ser llamado.
        """
        deadline = time.perf_counter() + timeout
        while not until():
            now = time.perf_counter()
            if now >= deadline:
                return False
            wait = min(deadline - now, 0.05)
            if tick is not None:
                due = tick(now)
                if until():
                    return True
                if due is not None:
                    wait = max(0.0, min(wait, due - time.perf_counter()))
            events = self.selector.select(wait)
            self.now_ns = time.perf_counter_ns()
            for key, mask in events:
                client: Client = key.data
                if mask & selectors.EVENT_WRITE:
                    client.on_writable()
                if mask & selectors.EVENT_READ and client.state != "closed":
                    client.on_readable()
        return True

    def settle(self, quiet: float, timeout: float) -> None:
        """Atiende hasta que nadie reciba nada durante ``quiet`` segundos."""
        quiet_ns = int(quiet * 1e9)
        self.run(lambda: time.perf_counter_ns() - self.last_rx >= quiet_ns, timeout)

    def close(self) -> None:
        """Cierra todos los clientes y el selector."""
        for client in list(self.clients):
            client.close()
        self.selector.close()


def join_all(
    loop: Loop,
    address: Address,
    clients: Iterable[Client],
    *,
    concurrency: int = 32,
    timeout: float = 60.0,
) -> None:
    """Conecta y une a todos los clientes, con a lo sumo ``concurrency`` handshakes en curso.

    Limitar la concurrencia evita desbordar la cola de ``listen`` del servidor
    (un SYN descartado cuesta un segundo de reintento y falsearía los números)
    y respeta el cupo de saludos por dirección del servidor con sus valores por
    omisión (16 respondiendo y 16 esperando turno desde 127.0.0.1).
    """
    waiting = list(clients)
    waiting.reverse()
    total = len(waiting)
    pending: set[Client] = set()
    started: list[Client] = []

    def until() -> bool:
        for client in [c for c in pending if c.state in ("joined", "closed")]:
            pending.discard(client)
        while waiting and len(pending) < concurrency:
            client = waiting.pop()
            started.append(client)
            pending.add(client)
            client.connect(address)
        return not waiting and not pending

    loop.run(until, timeout)
    failed = [c for c in started if c.state != "joined"]
    if failed or len(started) != total:
        sample = failed[0] if failed else None
        detail = f"{sample.name}: {sample.error or sample.state} {sample.unexpected[:2]}" if sample else ""
        raise BenchError(f"{len(failed) + total - len(started)} of {total} clients did not join ({detail})")


# --- resultados ---------------------------------------------------------------


@dataclass
class Delivery:
    """Conteo de entregas de un escenario: lo esperado contra lo recibido."""

    expected: int = 0
    delivered: int = 0
    out_of_order: int = 0

    @property
    def lost(self) -> int:
        """Mensajes que no llegaron (negativo si llegaron de más)."""
        return self.expected - self.delivered

    @property
    def ok(self) -> bool:
        """Todo llegó, una vez y en orden."""
        return self.lost == 0 and self.out_of_order == 0


@dataclass
class FanoutResult:
    """Throughput de difusión: un emisor, ``receivers`` receptores."""

    receivers: int
    messages: int
    seconds: float
    delivery: Delivery
    deliveries_per_second: float


@dataclass
class LatencyResult:
    """Latencias de entrega (ms) medidas en los receptores."""

    receivers: int
    messages: int
    rate_hz: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    samples: int
    delivery: Delivery


@dataclass
class JoinResult:
    """Conectar + handshake + ``:q`` repetido muchas veces."""

    joins: int
    seconds: float
    joins_per_second: float
    failures: int


@dataclass
class TransferResult:
    """Transferencias concurrentes y verificación de que el dinero se conserva."""

    clients: int
    transfers: int
    seconds: float
    transfers_per_second: float
    succeeded: int
    insufficient: int
    funds_before: int
    funds_after: int
    expected_total: int
    replies_missing: int
    amount_sent: int
    amount_received: int

    @property
    def conserved(self) -> bool:
        """La suma de ``:funds`` antes y después coincide con lo depositado, y lo enviado con lo recibido."""
        return (
            self.funds_before == self.funds_after == self.expected_total
            and self.amount_sent == self.amount_received
        )

    @property
    def ok(self) -> bool:
        """Cada ``:t`` tuvo su respuesta y el dinero se conservó."""
        return self.conserved and self.replies_missing == 0


@dataclass
class StallResult:
    """Latencia de los demás con un lector colgado (o sin él, como línea base)."""

    clients: int
    stalled: bool
    burst_messages: int
    latency: LatencyResult
    burst_delivery: Delivery
    burst_seconds: float
    stalled_cut: bool = False


# Se llama con "joined" (todos unidos, antes del tráfico) y "done" (tráfico
# terminado, antes de cerrar los clientes): run.py toma fotos de /proc ahí.
Hook = Callable[[str], None]


def _percentile(sorted_values: list[float], q: float) -> float:
    """Percentil por rango más cercano (sin interpolar): p99 es un valor observado."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[index]


def _pad(size: int) -> str:
    return "x" * max(0, size)


# --- escenario: difusión (throughput y latencia) ---------------------------------


class _SequenceCounter:
    """Cuenta en cada receptor las líneas del emisor y verifica su orden."""

    def __init__(self, prefix: bytes, expected_per_receiver: int, latencies: list[int] | None) -> None:
        self.prefix = prefix
        self.offset = len(prefix)
        self.expected = expected_per_receiver
        self.next_seq: dict[Client, int] = {}
        self.out_of_order = 0
        self.delivered = 0
        self.done_receivers = 0
        self.last_delivery_ns = 0
        self.latencies = latencies

    def on_line(self, client: Client, line: bytes, now_ns: int) -> None:
        if not line.startswith(self.prefix):
            return
        fields = line[self.offset :].split(b" ", 2)
        seq = int(fields[0])
        expected = self.next_seq.get(client, 0)
        if seq != expected:
            self.out_of_order += 1
        self.next_seq[client] = seq + 1
        self.delivered += 1
        self.last_delivery_ns = now_ns
        if self.latencies is not None:
            self.latencies.append(now_ns - int(fields[1]))
        if seq + 1 == self.expected:
            self.done_receivers += 1


def _receivers(loop: Loop, count: int, prefix: str = "r") -> list[Client]:
    width = max(4, len(str(count)))
    return [Client(loop, f"{prefix}{i:0{width}d}") for i in range(count)]


class _ByteCounter:
    """Cuenta bytes y líneas por receptor sin separar líneas (la inundación es grande).

    La verificación es exacta igual: cada receptor debe recibir exactamente los
    bytes esperados y terminar con la última línea del emisor.
    """

    def __init__(self, expected_bytes: int, last_line: bytes) -> None:
        self.expected_bytes = expected_bytes
        self.last_line = last_line
        self.received: dict[Client, int] = {}
        self.lines: dict[Client, int] = {}
        self.tails: dict[Client, bytes] = {}
        self.done_receivers = 0
        self.last_delivery_ns = 0

    def on_data(self, client: Client, data: bytes, now_ns: int) -> None:
        total = self.received.get(client, 0) + len(data)
        self.received[client] = total
        self.lines[client] = self.lines.get(client, 0) + data.count(b"\n")
        keep = len(self.last_line)
        tail = data[-keep:] if len(data) >= keep else self.tails.get(client, b"") + data
        self.tails[client] = tail[-keep:]
        self.last_delivery_ns = now_ns
        if total >= self.expected_bytes and total - len(data) < self.expected_bytes:
            self.done_receivers += 1

    def delivery(self, receivers: list[Client], messages: int) -> Delivery:
        wrong = sum(
            1
            for r in receivers
            if self.received.get(r, 0) != self.expected_bytes or self.tails.get(r) != self.last_line
        )
        delivered = sum(min(self.lines.get(r, 0), messages) for r in receivers)
        return Delivery(len(receivers) * messages, delivered, wrong)


def fanout_throughput(
    address: Address,
    receivers: int,
    messages: int,
    *,
    payload: int = 48,
    timeout: float = 120.0,
    hook: Hook | None = None,
) -> FanoutResult:
    """Un emisor inunda ``messages`` líneas; se mide entregas/s en ``receivers`` receptores.

    El reloj corre desde el primer byte enviado hasta la última entrega.
    """
    loop = Loop()
    try:
        pad = _pad(payload).encode()
        data = b"".join(b"m %d %s\n" % (i, pad) for i in range(messages))
        # Lo que ve cada receptor: "snd: " delante de cada línea.
        expected_bytes = len(data) + messages * len(f"{SENDER}: ")
        counter = _ByteCounter(expected_bytes, b"%s: m %d %s\n" % (SENDER.encode(), messages - 1, pad))
        clients = _receivers(loop, receivers)
        sender = Client(loop, SENDER)
        join_all(loop, address, [*clients, sender])
        loop.settle(0.3, 30.0)
        # Solo después de los avisos "connected!": desde aquí cada byte es del emisor.
        for client in clients:
            client.on_data = counter.on_data
        if hook is not None:
            hook("joined")
        start = time.perf_counter_ns()
        sender.send(data)
        loop.run(lambda: counter.done_receivers >= receivers, timeout)
        end = counter.last_delivery_ns or time.perf_counter_ns()
        if hook is not None:
            hook("done")
        seconds = max(1e-9, (end - start) / 1e9)
        delivery = counter.delivery(clients, messages)
        return FanoutResult(receivers, messages, seconds, delivery, delivery.delivered / seconds)
    finally:
        loop.close()


def idle(address: Address, clients: int, *, hook: Hook | None = None) -> int:
    """Une ``clients`` clientes y los deja quietos; ``hook("joined")`` mide con todos conectados."""
    loop = Loop()
    try:
        members = _receivers(loop, clients, prefix="m")
        join_all(loop, address, members)
        loop.settle(0.3, 30.0)
        if hook is not None:
            hook("joined")
        return len(members)
    finally:
        loop.close()


def _paced(
    loop: Loop,
    sender: Client,
    messages: int,
    rate_hz: float,
    payload: int,
    counter: _SequenceCounter,
    receivers: int,
    timeout: float,
    tag: str = "l",
) -> None:
    """Envía ``messages`` líneas a ritmo fijo con la marca de tiempo de envío adentro."""
    interval = 1.0 / rate_hz
    pad = _pad(payload)
    state = {"sent": 0, "next": time.perf_counter()}

    def tick(now: float) -> float | None:
        if state["sent"] >= messages:
            return None
        if now >= state["next"]:
            seq = state["sent"]
            sender.send(f"{tag} {seq} {time.perf_counter_ns()} {pad}\n".encode())
            state["sent"] = seq + 1
            # Programa por reloj absoluto: un retraso no se acumula.
            state["next"] += interval
        return state["next"]

    loop.run(lambda: counter.done_receivers >= receivers, messages * interval + timeout, tick)


def _latency_result(
    receivers: int, messages: int, rate_hz: float, latencies_ns: list[int], counter: _SequenceCounter
) -> LatencyResult:
    values = sorted(v / 1e6 for v in latencies_ns)
    delivery = Delivery(receivers * messages, counter.delivered, counter.out_of_order)
    return LatencyResult(
        receivers,
        messages,
        rate_hz,
        _percentile(values, 50),
        _percentile(values, 99),
        values[-1] if values else float("nan"),
        len(values),
        delivery,
    )


def fanout_latency(
    address: Address,
    receivers: int,
    messages: int,
    *,
    rate_hz: float = 20.0,
    payload: int = 48,
    timeout: float = 15.0,
    hook: Hook | None = None,
) -> LatencyResult:
    """Emisor a ritmo fijo; cada receptor mide ``ahora - marca de envío`` (mismo reloj)."""
    loop = Loop()
    try:
        latencies: list[int] = []
        counter = _SequenceCounter(f"{SENDER}: l ".encode(), messages, latencies)
        clients = _receivers(loop, receivers)
        for client in clients:
            client.on_line = counter.on_line
        sender = Client(loop, SENDER)
        join_all(loop, address, [*clients, sender])
        loop.settle(0.3, 30.0)
        if hook is not None:
            hook("joined")
        _paced(loop, sender, messages, rate_hz, payload, counter, receivers, timeout)
        if hook is not None:
            hook("done")
        return _latency_result(receivers, messages, rate_hz, latencies, counter)
    finally:
        loop.close()


# --- escenario: lector colgado -----------------------------------------------


def stalled_reader(
    address: Address,
    clients: int,
    *,
    stalled: bool,
    burst_bytes: int = 3_400_000,
    line_bytes: int = 1000,
    messages: int = 100,
    rate_hz: float = 20.0,
    timeout: float = 30.0,
) -> StallResult:
    """``clients`` en total: un emisor, un cliente "lento" y el resto lectores normales.

    Primero el emisor manda una ráfaga de ``burst_bytes`` por destinatario (más
    de lo que caben en los buffers del kernel de un socket que no se lee, unos
    3 MB en loopback con ``SO_RCVBUF`` chico), y luego mensajes a ritmo fijo
    cuya latencia se mide en los lectores normales. Con ``stalled=False`` el
    cliente lento sí lee: es la línea base. ``stalled_cut`` dice si el servidor
    terminó cortando al lector colgado (su cola superó el límite).
    """
    loop = Loop()
    try:
        readers = _receivers(loop, clients - 2)
        slow = Client(loop, "slow", rcvbuf=4096 if stalled else None)
        sender = Client(loop, SENDER)
        burst_messages = max(1, burst_bytes // line_bytes)
        pad = _pad(line_bytes - 16)
        burst_data = "".join(f"b {i} {pad}\n" for i in range(burst_messages)).encode()
        # Aquí se separan líneas (no se cuentan bytes): si el servidor corta al
        # lector colgado, los demás reciben "slow disconnected!" en medio de la ráfaga.
        burst = _SequenceCounter(f"{SENDER}: b ".encode(), burst_messages, None)
        latencies: list[int] = []
        paced = _SequenceCounter(f"{SENDER}: l ".encode(), messages, latencies)

        def on_line(client: Client, line: bytes, now_ns: int) -> None:
            if line.startswith(b"snd: b "):
                burst.on_line(client, line, now_ns)
            else:
                paced.on_line(client, line, now_ns)

        join_all(loop, address, [*readers, slow, sender])
        loop.settle(0.3, 30.0)
        for reader in readers:
            reader.on_line = on_line
        if stalled:
            slow.stop_reading()
        start = time.perf_counter_ns()
        sender.send(burst_data)
        loop.run(lambda: burst.done_receivers >= len(readers), timeout)
        burst_seconds = ((burst.last_delivery_ns or time.perf_counter_ns()) - start) / 1e9
        _paced(loop, sender, messages, rate_hz, 48, paced, len(readers), timeout)
        latency = _latency_result(len(readers), messages, rate_hz, latencies, paced)
        burst_delivery = Delivery(len(readers) * burst_messages, burst.delivered, burst.out_of_order)
        # ¿El servidor cortó al lector colgado? Se nota como EOF/RST al volver a leer.
        cut = False
        if stalled:
            slow.on_line = lambda client, line, now: None
            slow.resume_reading()
            loop.run(lambda: slow.state == "closed", 2.0)
            cut = slow.state == "closed"
        return StallResult(clients, stalled, burst_messages, latency, burst_delivery, burst_seconds, cut)
    finally:
        loop.close()


# --- escenario: justicia del control de flujo ------------------------------------


class PacedClient(Client):
    """Un lector que lee a lo más ``rate`` bytes/s (su socket deja de leerse al agotar el cupo)."""

    def __init__(self, loop: Loop, name: str, rate: float) -> None:
        super().__init__(loop, name, rcvbuf=16384)
        self.rate = rate
        self.allowance = rate * 0.01
        self.received = 0

    def refill(self, dt: float) -> None:
        self.allowance = min(self.rate * 0.05, self.allowance + self.rate * dt)
        if self.allowance >= 1 and not self.reading and self.state != "closed":
            self.resume_reading()

    def on_readable(self) -> None:
        if self.state != "joined":
            super().on_readable()
            return
        try:
            data = self.sock.recv(max(1, min(RECV_SIZE, int(self.allowance))))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.fail(f"recv: {exc}")
            return
        if not data:
            self.eof = True
            self.close()
            return
        self.received += len(data)
        self.allowance -= len(data)
        if self.allowance < 1:
            self.stop_reading()


@dataclass
class FairnessResult:
    """Un emisor inunda; dos lectores a ritmo fijo y el resto leyendo a toda velocidad."""

    clients: int
    seconds: float
    flood_bytes_per_s: float
    fast_reader_bytes_per_s: float
    slow_reader_bytes_per_s: float
    readers_bytes_per_s_min: float
    paced_cut: int
    readers_cut: int


def fairness(
    address: Address,
    clients: int,
    *,
    seconds: float = 10.0,
    fast_rate: float = 1_000_000,
    slow_rate: float = 16 * 1024,
    line_bytes: int = 200,
) -> FairnessResult:
    """``clients`` en total: un emisor que inunda, un lector a ``fast_rate``, uno a ``slow_rate``.

    El emisor escribe tan rápido como el servidor lo lee durante ``seconds``;
    se mide cuánto aceptó el servidor del emisor, cuánto recibió cada lector a
    ritmo fijo y si el servidor cortó a alguien (no debería: todos leen).
    """
    loop = Loop()
    try:
        readers = _receivers(loop, clients - 3)
        fast = PacedClient(loop, "paced_fast", fast_rate)
        slow = PacedClient(loop, "paced_slow", slow_rate)
        sender = Client(loop, SENDER)
        counted: dict[Client, int] = {}

        def on_data(client: Client, data: bytes, now_ns: int) -> None:
            counted[client] = counted.get(client, 0) + len(data)

        gone: set[bytes] = set()

        def on_line(client: Client, line: bytes, now_ns: int) -> None:
            counted[client] = counted.get(client, 0) + len(line) + 1
            if line.endswith(b" disconnected!"):
                gone.add(line.removeprefix(b"[SERVER] Client: ").removesuffix(b" disconnected!"))

        join_all(loop, address, [*readers, fast, slow, sender])
        loop.settle(0.3, 30.0)
        # Un lector separa líneas para ver los avisos de desconexión: un lector
        # cortado puede tardar minutos en leer lo que el núcleo ya le tenía.
        readers[0].on_line = on_line
        for reader in readers[1:]:
            reader.on_data = on_data
        pad = _pad(line_bytes - 12)
        chunk = "".join(f"f {i:06d} {pad}\n" for i in range(1000)).encode()
        state = {"queued": 0, "last": time.perf_counter()}
        start = time.perf_counter()
        end = start + seconds

        def tick(now: float) -> float | None:
            for paced in (fast, slow):
                paced.refill(now - state["last"])
            state["last"] = now
            if now < end and len(sender.outbuf) < len(chunk) and sender.state == "joined":
                sender.send(chunk)
                state["queued"] += len(chunk)
            return now + 0.005

        loop.run(lambda: time.perf_counter() >= end, seconds + 5.0, tick)
        elapsed = time.perf_counter() - start
        accepted = state["queued"] - len(sender.outbuf)
        closed = [r for r in readers if r.state == "closed"]
        rates = [counted.get(r, 0) / elapsed for r in readers if r.state != "closed"]
        return FairnessResult(
            clients,
            elapsed,
            accepted / elapsed,
            fast.received / elapsed,
            slow.received / elapsed,
            min(rates) if rates else float("nan"),
            sum(1 for p in (fast, slow) if p.state == "closed" or p.name.encode() in gone),
            len(closed) + len({r.name.encode() for r in readers} & gone),
        )
    finally:
        loop.close()


# --- escenario: altas y bajas ------------------------------------------------------


def joins(address: Address, total: int, *, concurrency: int = 32, timeout: float = 120.0) -> JoinResult:
    """``total`` clientes que se conectan, completan el handshake y salen con ``:q``.

    Un alta cuenta cuando el cliente recibió la despedida y el servidor cerró.
    """
    loop = Loop()
    done = {"ok": 0, "failed": 0}
    active: set[Client] = set()
    counter = iter(range(total))

    def on_joined(client: Client) -> None:
        client.send(b":q\n")

    def on_line(client: Client, line: bytes, now_ns: int) -> None:
        if line == GOODBYE:
            client.said_goodbye = True

    def on_closed(client: Client) -> None:
        active.discard(client)
        # Cuenta si llegó la despedida; el cierre puede ser FIN (EOF) o RST.
        if client.said_goodbye:
            done["ok"] += 1
        else:
            done["failed"] += 1

    def until() -> bool:
        while len(active) < concurrency:
            index = next(counter, None)
            if index is None:
                break
            client = Client(loop, f"j{index:06d}")
            client.on_joined, client.on_line, client.on_closed = on_joined, on_line, on_closed
            active.add(client)
            client.connect(address)
        return not active

    try:
        start = time.perf_counter()
        finished = loop.run(until, timeout)
        seconds = time.perf_counter() - start
        failures = done["failed"] + (0 if finished else len(active) + total - done["ok"] - done["failed"])
        return JoinResult(done["ok"], seconds, done["ok"] / seconds, failures)
    finally:
        loop.close()


# --- escenario: transferencias ------------------------------------------------------


def transfers(
    address: Address,
    clients: int,
    per_client: int,
    *,
    balance: int = 1000,
    max_amount: int = 100,
    seed: int = 4,
    timeout: float = 120.0,
    rounds: int = 1,
) -> TransferResult:
    """Cada cliente envía ``per_client`` ``:t`` a destinos al azar, todos a la vez.

    Con ``rounds`` > 1 eso se repite, y cada ronda empieza cuando llegaron todas
    las respuestas de la anterior: la misma ráfaga varias veces, para que la
    corrida dure lo bastante; el tiempo es la suma de las rondas. Antes de la
    primera y después de la última cada uno pide ``:funds``; la suma debe ser
    ``clients * balance``.
    """
    loop = Loop()
    rng = random.Random(seed)
    try:
        members = _receivers(loop, clients, prefix="t")
        for member in members:
            member.balance = balance
        state: dict[Client, dict[str, int]] = {m: {"funds": -1, "replies": 0} for m in members}
        totals = {"ok": 0, "insufficient": 0, "sent_amount": 0, "received_amount": 0}

        def on_line(client: Client, line: bytes, now_ns: int) -> None:
            if line == INSUFFICIENT:
                state[client]["replies"] += 1
                totals["insufficient"] += 1
                return
            if not line.startswith(SERVER_PREFIX):
                return
            text = line.decode(errors="replace")
            if (sent := proto.parse_transfer_sent_line(text)) is not None:
                state[client]["replies"] += 1
                totals["ok"] += 1
                totals["sent_amount"] += sent[0]
            elif (received := proto.parse_transfer_received_line(text)) is not None:
                totals["received_amount"] += received[1]
            elif (funds := proto.parse_funds_line(text)) is not None:
                state[client]["funds"] = funds

        for member in members:
            member.on_line = on_line
        join_all(loop, address, members)
        loop.settle(0.3, 30.0)

        def ask_funds() -> int:
            for member in members:
                state[member]["funds"] = -1
                member.send(b":funds\n")
            loop.run(lambda: all(s["funds"] >= 0 for s in state.values()), 30.0)
            return sum(s["funds"] for s in state.values() if s["funds"] >= 0)

        before = ask_funds()
        seconds = 0.0
        for round_ in range(rounds):
            scripts = []
            for index, member in enumerate(members):
                lines = []
                for _ in range(per_client):
                    target = rng.randrange(clients - 1)
                    target += target >= index  # nunca a uno mismo
                    lines.append(f":t - {members[target].name} - {rng.randint(1, max_amount)}\n")
                scripts.append((member, "".join(lines).encode()))
            goal = (round_ + 1) * clients * per_client
            start = time.perf_counter()
            for member, script in scripts:
                member.send(script)
            loop.run(lambda goal=goal: totals["ok"] + totals["insufficient"] >= goal, timeout)
            seconds += time.perf_counter() - start
        expected_replies = clients * per_client * rounds
        loop.settle(0.2, 10.0)  # avisos "transferred you" que aún viajan
        after = ask_funds()
        answered = totals["ok"] + totals["insufficient"]
        return TransferResult(
            clients,
            expected_replies,
            seconds,
            answered / seconds,
            totals["ok"],
            totals["insufficient"],
            before,
            after,
            clients * balance,
            expected_replies - answered,
            totals["sent_amount"],
            totals["received_amount"],
        )
    finally:
        loop.close()


def summarize(values: Iterable[float]) -> float:
    """Mediana de las repeticiones (robusta ante una corrida con ruido)."""
    data = [v for v in values if v == v]
    return statistics.median(data) if data else float("nan")
