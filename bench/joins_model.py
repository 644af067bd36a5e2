"""Cuántas altas por segundo cuesta cada microsegundo de Python por alta, con un hilo por conexión.

La fila de altas compara chatlib con asyncio; ``floor+portable`` (el techo con
la E/S de chatlib) no hace nada más que el saludo. Este modelo le agrega al
techo Python puro por alta (``bench/floor_server.py --spin N``, con el GIL
tomado, repartido entre las tres respuestas) y mide, en corridas alternadas,
las altas por segundo y la CPU de usuario por alta de cada variante, junto con
chatlib y asyncio. El tiempo por alta (el inverso de las altas por segundo) del
techo crece en línea recta con su CPU de usuario por alta: la recta ajustada
dice cuánta CPU de usuario por alta permite igualar a asyncio, y cuántas altas
haría el techo con la CPU de usuario de chatlib. La CPU de usuario se lee de
``/proc/<pid>/stat`` del servidor (``servers.sample``, solo Linux).

Uso: ``python bench/joins_model.py [--joins 3000] [--rounds 5] [--spins 0,2000,4000,8000]
[--warm-up 200]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import driver, servers  # noqa: E402


def measure(kind: str, extra: tuple[str, ...], joins: int, warm_up: int) -> tuple[float, float, float]:
    """Una corrida: altas por segundo y µs de CPU de usuario y de sistema por alta."""
    with servers.ServerProcess(kind, 4096, extra_args=extra) as server:
        driver.joins(server.address, warm_up)
        before = server.sample()
        result = driver.joins(server.address, joins)
        after = server.sample()
        if result.failures:
            raise RuntimeError(f"{kind} {' '.join(extra)}: {result.failures} joins failed")
    user = after.user_seconds - before.user_seconds
    system = after.cpu_seconds - before.cpu_seconds - user
    return result.joins_per_second, user / joins * 1e6, system / joins * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--joins", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warm-up", type=int, default=200, help="joins before measuring each run")
    parser.add_argument("--spins", default="0,2000,4000,8000", help="floor+portable --spin values")
    args = parser.parse_args(argv)
    spins = [int(text) for text in args.spins.split(",")]
    variants = [("threaded", ()), ("asyncio", ())]
    variants += [("floor+portable", ("--spin", str(spin))) for spin in spins]
    servers.raise_fd_limit()
    runs: list[list[tuple[float, float, float]]] = [[] for _ in variants]
    for round_ in range(args.rounds):
        order = list(range(len(variants)))
        for i in order if round_ % 2 == 0 else order[::-1]:
            runs[i].append(measure(*variants[i], args.joins, args.warm_up))
    print(f"joins: {args.joins} per run, {args.rounds} alternating rounds, medians")
    print("| server | joins/s | user µs/join | sys µs/join |")
    print("|---|---:|---:|---:|")
    medians = []
    for i, (kind, extra) in enumerate(variants):
        rate, user, system = (statistics.median(run[k] for run in runs[i]) for k in range(3))
        medians.append((rate, user))
        label = kind if not extra else f"{kind} --spin {extra[1]}"
        print(f"| {label} | {rate:,.0f} | {user:.0f} | {system:.0f} |")
    # El tiempo por alta (1 / altas por segundo) crece en línea recta con el Python por alta.
    floor = medians[2:]
    if len(floor) >= 2:
        b, a = statistics.linear_regression([user for _, user in floor], [1e6 / rate for rate, _ in floor])
        threaded_rate, threaded_user = medians[0]
        asyncio_rate = medians[1][0]
        points = len(floor)
        print(f"floor+portable: each µs of user CPU per join adds {b:.2f} µs per join ({points} points)")
        if b > 0:
            at_asyncio = (1e6 / asyncio_rate - a) / b
            print(f"user CPU per join at asyncio's rate: {at_asyncio:.0f} µs (chatlib: {threaded_user:.0f})")
            at_threaded = 1e6 / (a + b * threaded_user)
            print(f"the line at chatlib's user CPU: {at_threaded:,.0f}/s (chatlib: {threaded_rate:,.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
