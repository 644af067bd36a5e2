"""Cuánto cuesta ``Outbox.push`` por encima de un ``send`` desnudo, en un solo hilo.

Es el costo por destinatario de cada línea difundida (con mil receptores se
paga mil veces por mensaje). Ambos envían la misma línea de 61 bytes a un
``socketpair`` no bloqueante con buffers grandes; tras cada tanda se vacía el
otro extremo. Imprime una tabla en µs por envío (mínimo, p25 y mediana de las
tandas); el ruido de esta VM mueve las medianas, el p25 es más estable.

Uso: ``python bench/push_cost.py [--rounds 60] [--per-round 2000]``.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatlib.outbox import Flusher, Outbox  # noqa: E402

LINE = b"x" * 60 + b"\n"


def _drain(sock: socket.socket) -> None:
    while True:
        try:
            if not sock.recv(1 << 20):
                return
        except BlockingIOError:
            return


def _round(send: Callable[[bytes], object], reader: socket.socket, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        send(LINE)
    elapsed = time.perf_counter() - start
    _drain(reader)
    return elapsed / count * 1e6


def measure(rounds: int, per_round: int) -> dict[str, list[float]]:
    """µs por envío de cada tanda, para ``send`` y para ``Outbox.push``, alternados."""
    writer, reader = socket.socketpair()
    try:
        writer.setblocking(False)
        reader.setblocking(False)
        writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        outbox = Outbox(writer, Flusher())
        senders: dict[str, Callable[[bytes], object]] = {"send": writer.send, "Outbox.push": outbox.push}
        results: dict[str, list[float]] = {name: [] for name in senders}
        for _ in range(rounds):
            for name, send in senders.items():
                results[name].append(_round(send, reader, per_round))
        return results
    finally:
        writer.close()
        reader.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--per-round", type=int, default=2000)
    args = parser.parse_args(argv)
    ordered = {name: sorted(values) for name, values in measure(args.rounds, args.per_round).items()}
    p25 = {name: values[len(values) // 4] for name, values in ordered.items()}
    print("| µs per line | min | p25 | median |")
    print("|---|---:|---:|---:|")
    for name, values in ordered.items():
        print(f"| {name} | {values[0]:.2f} | {p25[name]:.2f} | {values[len(values) // 2]:.2f} |")
    print(f"\nOutbox.push over a bare send (p25): {p25['Outbox.push'] - p25['send']:.2f} µs per line")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
