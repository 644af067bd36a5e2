"""Memoria de un servidor que corre mucho tiempo: RSS tras muchas transferencias y altas/bajas.

Uso::

    .venv/bin/python bench/memory.py                       # 1,000,000 transferencias, 100,000 altas
    .venv/bin/python bench/memory.py --transfers 200000 --joins 20000

Arranca ``python -m chatlib.server`` como proceso aparte y lee su VmRSS de
``/proc`` (solo Linux). Dos clientes se transfieren 1 dólar de ida y vuelta en
lotes de ``--batch`` líneas; después ``--joins`` clientes entran y salen con
``:q``, 32 a la vez. Imprime una tabla: la RSS tras las primeras 10,000
operaciones de cada fase es la referencia; al final debe estar a pocos MB de ella
(el diario del banco y ``console_lines`` están acotados).
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import driver, servers  # noqa: E402

SENT = b"[SERVER] Client: You transferred "
INSUFFICIENT = b"[SERVER] Client: You don't have sufficient funds"


class Trader:
    """Un cliente bloqueante que envía lotes de ``:t`` y cuenta sus respuestas."""

    def __init__(self, address: tuple[str, int], name: str, balance: int) -> None:
        self.sock = socket.create_connection(address, timeout=30)
        self.buffer = b""
        self.replies = 0
        self.joined = False
        self.sock.sendall(f"{name}\n{balance}\n".encode())
        while not self.joined:
            self._recv()

    def _recv(self) -> None:
        data = self.sock.recv(1 << 18)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        self.replies += sum(1 for line in lines if line.startswith((SENT, INSUFFICIENT)))
        self.joined = self.joined or any(line.startswith(driver.BALANCE_SET) for line in lines)

    def send_batch(self, target: str, count: int) -> None:
        self.sock.sendall(f":t - {target} - 1\n".encode() * count)

    def wait_replies(self, total: int) -> None:
        while self.replies < total:
            self._recv()

    def close(self) -> None:
        self.sock.close()


def rss_mib(server: servers.ServerProcess) -> float:
    return server.sample().rss_kib / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transfers", type=int, default=1_000_000, help="total 1-dollar transfers")
    parser.add_argument("--joins", type=int, default=100_000, help="clients that join and quit")
    parser.add_argument("--batch", type=int, default=1000, help=":t lines per batch and client")
    args = parser.parse_args(argv)
    servers.raise_fd_limit()
    rows: list[tuple[str, int, float]] = []
    started = time.perf_counter()
    with servers.ServerProcess("threaded", max_clients=256) as server:
        rows.append(("idle", 0, rss_mib(server)))
        ana = Trader(server.address, "ana", 10**9)
        beto = Trader(server.address, "beto", 10**9)
        done = 0
        checkpoints = sorted({min(10_000, args.transfers), args.transfers // 2, args.transfers})
        while done < args.transfers:
            ana.send_batch("beto", args.batch)
            beto.send_batch("ana", args.batch)
            done += 2 * args.batch
            ana.wait_replies(done // 2)
            beto.wait_replies(done // 2)
            while checkpoints and done >= checkpoints[0]:
                rows.append(("transfers", checkpoints.pop(0), rss_mib(server)))
        ana.close()
        beto.close()
        joined = 0
        checkpoints = sorted({min(10_000, args.joins), args.joins // 2, args.joins})
        while joined < args.joins:
            block = min(10_000, args.joins - joined, checkpoints[0] - joined)
            result = driver.joins(server.address, block, concurrency=32, timeout=600)
            if result.failures:
                print(f"{result.failures} joins failed", file=sys.stderr)
                return 1
            joined += block
            while checkpoints and joined >= checkpoints[0]:
                rows.append(("joins/quits", checkpoints.pop(0), rss_mib(server)))
    elapsed = time.perf_counter() - started
    print(f"bench/memory.py: {args.transfers:,} transfers, {args.joins:,} joins/quits, {elapsed:.0f} s\n")
    print("| phase | operations | server RSS (MiB) | vs. after the first 10,000 (MiB) |")
    print("|---|---:|---:|---:|")
    reference: dict[str, float] = {}
    for phase, count, rss in rows:
        base = reference.setdefault(phase, rss)
        print(f"| {phase} | {count:,} | {rss:.1f} | {rss - base:+.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
