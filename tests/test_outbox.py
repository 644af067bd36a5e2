"""El buffer de salida por cliente, con un socketpair real.

Camino rápido, cola, límites y control de flujo.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Iterator
from typing import cast

import pytest
from chatlib import outbox as outbox_module
from chatlib.outbox import HIGH_WATER, LOW_WATER, Flusher, Outbox
from tests.helpers import wait_until


@pytest.fixture
def flusher() -> Iterator[Flusher]:
    f = Flusher()
    f.start()
    yield f
    f.stop()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    # El Outbox escribe en un socket no bloqueante, como los de las sesiones del servidor.
    a.setblocking(False)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    yield a, b
    a.close()
    b.close()


def read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    sock.settimeout(10)
    while len(chunks) < size:
        data = sock.recv(min(65536, size - len(chunks)))
        assert data, "peer closed early"
        chunks += data
    return bytes(chunks)


def fill(outbox: Outbox, total: int, chunk: int = 8192) -> bytes:
    """Empuja ``total`` bytes numerados y devuelve lo que se empujó."""
    sent = bytearray()
    i = 0
    while len(sent) < total:
        data = (f"{i:08d}".encode() * (chunk // 8))[:chunk]
        assert outbox.push(data)
        sent += data
        i += 1
    return bytes(sent)


def test_fast_path_sends_immediately(flusher: Flusher, pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    outbox = Outbox(a, flusher)
    assert outbox.push(b"hello\n")
    assert outbox.queued == 0
    assert read_exactly(b, 6) == b"hello\n"


class _HeldSend:
    """Un socket cuyo primer ``send`` queda detenido hasta ``release``: un hilo "dentro" de ``send``."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def fileno(self) -> int:
        return self._sock.fileno()

    def send(self, data: bytes) -> int:
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            assert self.release.wait(10)
        return self._sock.send(data)


def test_a_push_never_waits_for_another_threads_send(
    flusher: Flusher, pair: tuple[socket.socket, socket.socket]
) -> None:
    """Con el lock tomado durante el ``send``, el segundo hilo esperaba al primero (una fila por cliente)."""
    a, b = pair
    held = _HeldSend(a)
    outbox = Outbox(cast(socket.socket, held), flusher)
    first = threading.Thread(target=outbox.push, args=(b"first\n",))
    first.start()
    assert held.entered.wait(10)
    others_done = threading.Event()

    def others() -> None:
        assert outbox.push(b"second\n")
        assert outbox.push(b"third\n")
        others_done.set()

    second = threading.Thread(target=others)
    second.start()
    # Vuelven mientras el primer send sigue detenido: solo encolaron.
    assert others_done.wait(10)
    assert outbox.queued == len(b"second\nthird\n")
    held.release.set()
    first.join(10)
    second.join(10)
    # El dueño envió también lo encolado, en orden, con un send más (no dos).
    assert read_exactly(b, len(b"first\nsecond\nthird\n")) == b"first\nsecond\nthird\n"
    assert outbox.queued == 0 and held.calls == 2
    assert outbox.wait_drained(5)


def test_slow_path_keeps_order_and_drains(
    flusher: Flusher, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    outbox = Outbox(a, flusher, limit=4 << 20)
    sent = fill(outbox, 1 << 20)
    assert outbox.queued > 0
    received = read_exactly(b, len(sent))
    assert received == sent
    assert outbox.wait_drained(5)


def test_overflow_closes_and_reports(flusher: Flusher, pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    called = threading.Event()
    outbox = Outbox(a, flusher, limit=64 << 10, on_overflow=lambda ob: called.set())
    pushed = 0
    while outbox.push(b"x" * 4096):
        pushed += 1
        assert pushed < 10_000
    assert called.is_set()
    assert outbox.closed and outbox.overflowed
    assert outbox.closed_reason == "stopped reading (more than 65536 bytes queued)"
    assert not outbox.push(b"more")


def test_backpressure_waits_for_a_slow_reader_and_gives_up_on_a_stalled_one(
    flusher: Flusher, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    outbox = Outbox(a, flusher, limit=4 << 20)
    sent = fill(outbox, HIGH_WATER + (64 << 10))
    assert outbox.congested
    # Nadie lee: no avanza en una ventana de progreso, queda atascado y nadie vuelve a esperarlo.
    assert not outbox.wait_for_room()
    assert outbox.stalled and not outbox.congested
    # Ahora lee: la cola se vacía y el atasco se olvida.
    received = read_exactly(b, len(sent))
    assert received == sent
    wait_until(lambda: outbox.queued == 0 and not outbox.stalled, what="the queue to drain")
    more = fill(outbox, HIGH_WATER + (64 << 10))
    assert outbox.congested
    reader = threading.Thread(target=lambda: read_exactly(b, len(more)))
    reader.start()
    assert outbox.wait_for_room()
    assert outbox.queued <= LOW_WATER
    reader.join(10)


def test_last_push_seals_and_pause_keeps_order(
    flusher: Flusher, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    outbox = Outbox(a, flusher)
    outbox.pause()
    assert outbox.push(b"first\n")
    assert outbox.push(b"second\n")
    assert outbox.queued == len(b"first\nsecond\n")
    outbox.resume()
    assert outbox.push(b"bye\n", last=True)
    assert not outbox.push(b"late\n")
    assert read_exactly(b, len(b"first\nsecond\nbye\n")) == b"first\nsecond\nbye\n"


def test_flusher_drains_more_queues_than_select_can_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Con ``select()`` (Windows) se vigilan a lo más ``SELECT_LIMIT`` sockets; el resto espera turno."""
    monkeypatch.setattr(selectors, "DefaultSelector", selectors.SelectSelector)
    monkeypatch.setattr(outbox_module, "SELECT_LIMIT", 2)
    flusher = Flusher()
    flusher.start()
    pairs = [socket.socketpair() for _ in range(6)]
    try:
        sent = []
        for a, _ in pairs:
            a.setblocking(False)
            a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            outbox = Outbox(a, flusher, limit=4 << 20)
            sent.append(fill(outbox, 256 << 10))
            assert outbox.queued > 0
        for (_, b), data in zip(pairs, sent, strict=True):
            assert read_exactly(b, len(data)) == data
    finally:
        flusher.stop()
        for a, b in pairs:
            a.close()
            b.close()


def test_many_threads_pushing_to_one_outbox_lose_nothing_and_keep_each_ones_order(
    flusher: Flusher, pair: tuple[socket.socket, socket.socket]
) -> None:
    """El protocolo del dueño bajo carga: 8 hilos, buffers de 4 KiB, cola lenta y Flusher a la vez."""
    a, b = pair
    outbox = Outbox(a, flusher, limit=64 << 20)
    writers, per_writer = 8, 2000
    start = threading.Barrier(writers + 1)

    def write(w: int) -> None:
        start.wait(10)
        for i in range(per_writer):
            assert outbox.push(f"w{w}:{i}:{'x' * (i % 50)}\n".encode())

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    start.wait(10)
    received = bytearray()
    b.settimeout(10)
    while received.count(b"\n") < writers * per_writer:
        data = b.recv(65536)
        assert data, "the outbox closed"
        received += data
    for thread in threads:
        thread.join(10)
    seen: dict[int, list[int]] = {w: [] for w in range(writers)}
    for line in received.decode().splitlines():
        w, i, pad = line.split(":")
        assert pad == "x" * (int(i) % 50)
        seen[int(w[1:])].append(int(i))
    assert all(seen[w] == list(range(per_writer)) for w in range(writers))
    assert outbox.wait_drained(5) and outbox.queued == 0
    assert_idle_flag_is_true(outbox, expected=True)


def assert_idle_flag_is_true(outbox: Outbox, *, expected: bool) -> None:
    """``idle`` (el atajo del camino rápido) coincide con el estado completo, leído con el lock."""
    with outbox._lock:
        free = not (
            outbox.closed
            or outbox.sealed
            or outbox.paused
            or outbox._sending
            or outbox._inflight
            or outbox._pending
        )
        assert (outbox.idle, free) == (expected, expected)


def test_the_idle_flag_follows_every_state_of_the_outbox(
    flusher: Flusher, pair: tuple[socket.socket, socket.socket]
) -> None:
    """Un ``idle`` verdadero de más haría enviar por delante de una cola, tras el adiós o en pausa."""
    a, b = pair
    outbox = Outbox(a, flusher, limit=4 << 20)
    assert_idle_flag_is_true(outbox, expected=True)
    assert outbox.push(b"fast\n")
    assert_idle_flag_is_true(outbox, expected=True)
    outbox.pause()
    assert_idle_flag_is_true(outbox, expected=False)
    assert outbox.push(b"held\n")
    assert_idle_flag_is_true(outbox, expected=False)
    outbox.resume()
    assert_idle_flag_is_true(outbox, expected=True)
    assert read_exactly(b, len(b"fast\nheld\n")) == b"fast\nheld\n"
    # Una cola que el Flusher vacía: idle vuelve recién cuando no queda nada.
    sent = fill(outbox, 1 << 20)
    assert_idle_flag_is_true(outbox, expected=False)
    assert read_exactly(b, len(sent)) == sent
    wait_until(lambda: outbox.idle, timeout=10)
    assert_idle_flag_is_true(outbox, expected=True)
    assert outbox.push(b"bye\n", last=True)
    assert_idle_flag_is_true(outbox, expected=False)
    assert not outbox.push(b"late\n")
    assert read_exactly(b, 4) == b"bye\n"
    outbox.close()
    assert_idle_flag_is_true(outbox, expected=False)


def test_a_queue_that_forms_after_a_long_quiet_time_starts_its_progress_clock(
    flusher: Flusher, pair: tuple[socket.socket, socket.socket]
) -> None:
    """El camino rápido no lee el reloj: al formarse la cola el lector cuenta como al día en ese momento.

    Sin esto, un lector que recibió todo durante una hora y luego se llena
    parecería sin avanzar desde hace una hora y se le dejaría de esperar al instante.
    """
    a, b = pair
    outbox = Outbox(a, flusher, limit=4 << 20)
    assert outbox.push(b"hello\n")
    assert read_exactly(b, 6) == b"hello\n"

    def an_hour_ago() -> None:
        with outbox._lock:
            outbox._last_progress = time.monotonic() - 3600.0

    def clock_restarted() -> bool:
        with outbox._lock:
            return time.monotonic() - outbox._last_progress < outbox_module.NO_PROGRESS

    # La cola se forma en una pausa (se encola sin enviar).
    an_hour_ago()
    outbox.pause()
    assert outbox.push(b"held\n")
    assert clock_restarted()
    outbox.resume()
    assert read_exactly(b, 5) == b"held\n"
    # La cola se forma porque el núcleo ya estaba lleno: el send del camino rápido no entrega nada.
    stuffed = stuff_kernel(a)
    an_hour_ago()
    assert outbox.push(b"late\n")
    assert outbox.queued == 5
    assert clock_restarted()
    assert read_exactly(b, stuffed + 5) == b"f" * stuffed + b"late\n"


def stuff_kernel(sock: socket.socket) -> int:
    """Llena el buffer de envío del núcleo: el próximo ``push`` tiene que encolar."""
    filler = b"f" * 4096
    stuffed = 0
    try:
        while True:
            stuffed += sock.send(filler)
    except BlockingIOError:
        return stuffed


def test_resume_sends_first_after_the_queue_and_before_what_was_held(
    flusher: Flusher, pair: tuple[socket.socket, socket.socket]
) -> None:
    """``resume(first)``: lo que ya estaba en cola, luego ``first``, luego lo que llegó en la pausa."""
    a, b = pair
    outbox = Outbox(a, flusher, limit=4 << 20)
    # Sin cola: ``first`` sale directo y el buffer queda libre.
    outbox.pause()
    outbox.resume(b"first\n")
    assert read_exactly(b, 6) == b"first\n"
    assert_idle_flag_is_true(outbox, expected=True)
    # Algo llegó durante la pausa: ``first`` va delante.
    outbox.pause()
    assert outbox.push(b"held\n")
    outbox.resume(b"first\n")
    assert read_exactly(b, 11) == b"first\nheld\n"
    # Había cola antes de la pausa: esa va primero.
    stuffed = stuff_kernel(a)
    assert outbox.push(b"queued\n")
    outbox.pause()
    assert outbox.push(b"held\n")
    outbox.resume(b"first\n")
    expected = b"f" * stuffed + b"queued\nfirst\nheld\n"
    assert read_exactly(b, len(expected)) == expected
    assert outbox.wait_drained(5)
    assert_idle_flag_is_true(outbox, expected=True)


def test_discard_held_keeps_the_queue_from_before_the_pause(
    flusher: Flusher, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    outbox = Outbox(a, flusher, limit=4 << 20)
    stuffed = stuff_kernel(a)
    assert outbox.push(b"queued\n")
    outbox.pause()
    assert outbox.push(b"held\n")
    outbox.discard_held()
    outbox.resume()
    assert outbox.push(b"after\n")
    expected = b"f" * stuffed + b"queued\nafter\n"
    assert read_exactly(b, len(expected)) == expected


def test_resume_never_sends_first_after_a_goodbye(
    flusher: Flusher, pair: tuple[socket.socket, socket.socket]
) -> None:
    """Un adiós en la pausa sale después de ``first``; uno de antes de la pausa es lo último."""
    a, b = pair
    outbox = Outbox(a, flusher)
    outbox.pause()
    assert outbox.push(b"bye\n", last=True)
    outbox.resume(b"first\n")
    assert read_exactly(b, 10) == b"first\nbye\n"
    c, d = socket.socketpair()
    try:
        c.setblocking(False)
        sealed = Outbox(c, flusher)
        assert sealed.push(b"bye\n", last=True)
        sealed.pause()
        sealed.resume(b"first\n")
        assert sealed.wait_drained(5)
        c.shutdown(socket.SHUT_WR)
        d.settimeout(5)
        received = b""
        while chunk := d.recv(4096):
            received += chunk
        assert received == b"bye\n"
    finally:
        c.close()
        d.close()
