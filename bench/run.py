"""Benchmark: servidor con un hilo por conexión (A) contra la referencia asyncio (B).

Uso: ``.venv/bin/python bench/run.py`` (completo, unos minutos) o ``--quick``.

Cada medición arranca un servidor nuevo como proceso aparte en 127.0.0.1, lo
carga desde este proceso con sockets no bloqueantes (``bench/driver.py``) y lo
detiene. Las corridas alternan A y B (A B, luego B A) para que una deriva de la
máquina no favorezca a uno; se informa la mediana de las repeticiones y la
razón A/B. Salidas: una tabla en la terminal, ``bench/results/results.csv``
(cada medición cruda), ``bench/results/summary.md`` y dos gráficos PNG.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import math
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Ejecutado como script: el paquete ``bench`` está en la raíz del repositorio.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import driver, readme, servers  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = Path(__file__).resolve().parent / "runs"
OUTPUT_FILES = ("results.csv", "summary.md", "throughput.png", "latency.png")
A, B = "threaded", "asyncio"


@dataclass(frozen=True)
class Config:
    """Tamaños de una corrida; ``FULL`` es la que se publica."""

    ns: tuple[int, ...]
    repeats: int
    flood_deliveries: int  # entregas por corrida de inundación (M = esto / N)
    latency_messages: int
    rate_hz: float
    joins: int
    join_concurrency: int
    transfer_clients: int
    transfers_per_client: int
    transfer_rounds: int  # la misma ráfaga de :t, una tras otra, en cada corrida
    stall_clients: int
    stall_messages: int
    stall_burst_held: int  # llena el kernel del lector colgado sin pasar el límite de cola
    stall_burst_overflow: int  # supera el límite: el servidor debe cortarlo
    fair_clients: int
    fair_seconds: float


FULL = Config(
    ns=(10, 100, 1000),
    repeats=3,
    # Corridas de al menos un segundo: en una máquina rápida 10 M entregas a 100 receptores o
    # 2000 altas duraban 0,3-0,7 s y la mediana de 5 quedaba a merced del ruido (bench/README.md).
    flood_deliveries=40_000_000,
    latency_messages=120,
    rate_hz=20.0,
    joins=6000,
    join_concurrency=32,
    transfer_clients=100,
    transfers_per_client=500,
    # Cinco ráfagas por corrida: una sola duraba 0,2 s y la mediana era la de la VM (bench/README.md).
    transfer_rounds=5,
    stall_clients=100,
    stall_messages=100,
    stall_burst_held=3_400_000,
    stall_burst_overflow=6 << 20,
    fair_clients=100,
    fair_seconds=10.0,
)
QUICK = Config(
    ns=(10, 100, 1000),
    repeats=1,
    flood_deliveries=1_000_000,
    latency_messages=40,
    rate_hz=20.0,
    joins=300,
    join_concurrency=32,
    transfer_clients=20,
    transfers_per_client=100,
    transfer_rounds=1,
    stall_clients=100,
    stall_messages=40,
    stall_burst_held=3_400_000,
    stall_burst_overflow=6 << 20,
    fair_clients=100,
    fair_seconds=4.0,
)


class Recorder:
    """Acumula filas ``(escenario, parámetro, servidor, repetición, métrica, valor)``."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(
        self, scenario: str, param: str, server: str, rep: int, **metrics: float | int | bool | str
    ) -> None:
        for metric, value in metrics.items():
            self.rows.append(
                {
                    "scenario": scenario,
                    "param": param,
                    "server": server,
                    "rep": rep,
                    "metric": metric,
                    "value": value,
                }
            )

    def values(self, scenario: str, param: str, server: str, metric: str) -> list[float]:
        return [
            float(r["value"])
            for r in self.rows
            if (r["scenario"], r["param"], r["server"], r["metric"]) == (scenario, param, server, metric)
            and isinstance(r["value"], (int, float))
        ]

    def median(self, scenario: str, param: str, server: str, metric: str) -> float:
        return driver.summarize(self.values(scenario, param, server, metric))

    def worst(self, scenario: str, param: str, server: str, metric: str) -> float:
        values = self.values(scenario, param, server, metric)
        return max(values) if values else float("nan")

    def errors(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["metric"] == "error"]


def alternating(kinds: list[str], repeats: int) -> Iterator[tuple[int, str]]:
    """A B, B A, A B...: cada servidor corre primero la mitad de las veces."""
    for rep in range(repeats):
        order = kinds if rep % 2 == 0 else list(reversed(kinds))
        for kind in order:
            yield rep, kind


def measure(
    rec: Recorder,
    scenario: str,
    param: str,
    kind: str,
    rep: int,
    max_clients: int,
    body: Callable[[servers.ServerProcess], dict[str, float | int | bool]],
) -> None:
    """Arranca un servidor nuevo, ejecuta ``body`` y lo detiene pase lo que pase."""
    label = f"{scenario:<10} {param:<10} {kind:<9} rep {rep}"
    print(f"  {label} ...", end="", flush=True)
    started = time.perf_counter()
    try:
        with servers.ServerProcess(kind, max_clients) as server:
            base = server.sample()
            metrics = body(server)
            metrics.setdefault("base_threads", base.threads)
    except Exception as exc:  # noqa: BLE001 - se registra y se sigue con lo demás
        rec.add(scenario, param, kind, rep, error=f"{type(exc).__name__}: {exc}")
        print(f" ERROR {type(exc).__name__}: {exc}", flush=True)
        return
    rec.add(scenario, param, kind, rep, **metrics)
    shown = ", ".join(f"{k}={_fmt(v)}" for k, v in metrics.items() if k in _SHOWN)
    print(f" {time.perf_counter() - started:5.1f}s  {shown}", flush=True)


_SHOWN = {
    "deliveries_per_s",
    "p50_ms",
    "p99_ms",
    "lost",
    "joins_per_s",
    "transfers_per_s",
    "conserved",
    "cut",
    "readers_cut",
    "slow_reader_kib_s",
}


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)


class Probe:
    """Toma fotos de ``/proc`` del servidor en las etapas que marca el escenario."""

    def __init__(self, server: servers.ServerProcess) -> None:
        self.server = server
        self.samples: dict[str, servers.ProcSample] = {"start": server.sample()}

    def __call__(self, stage: str) -> None:
        self.samples[stage] = self.server.sample()


# --- escenarios ---------------------------------------------------------------------


def run_fanout(rec: Recorder, cfg: Config, kinds: list[str]) -> None:
    print("fan-out throughput (one sender floods, N receivers)")
    for n in cfg.ns:
        messages = max(10, cfg.flood_deliveries // n)

        def body(server: servers.ServerProcess, n: int = n, messages: int = messages) -> dict[str, Any]:
            probe = Probe(server)
            res = driver.fanout_throughput(server.address, n, messages, hook=probe)
            start, joined, done = probe.samples["start"], probe.samples["joined"], probe.samples["done"]
            cpu = done.cpu_seconds - joined.cpu_seconds
            return {
                "deliveries_per_s": res.deliveries_per_second,
                "seconds": res.seconds,
                "messages": messages,
                "expected": res.delivery.expected,
                "lost": res.delivery.lost,
                "corrupt": res.delivery.out_of_order,
                "server_cpu_s": cpu,
                "server_cpu_us_per_delivery": cpu / max(1, res.delivery.delivered) * 1e6,
                "threads_connected": joined.threads,
                "rss_start_kib": start.rss_kib,
                "rss_connected_kib": joined.rss_kib,
                "rss_per_client_kib": (joined.rss_kib - start.rss_kib) / (n + 1),
            }

        # ``floor+relay``, intercalado: el techo de un hilo por conexión que solo reenvía.
        for rep, kind in alternating([*kinds, FLOOR_RELAY], cfg.repeats):
            measure(rec, "fanout", str(n), kind, rep, n + 16, body)


def run_latency(rec: Recorder, cfg: Config, kinds: list[str]) -> None:
    print(f"delivery latency (sender paced at {cfg.rate_hz:g} msg/s, N receivers)")
    for n in cfg.ns:

        def body(server: servers.ServerProcess, n: int = n) -> dict[str, Any]:
            probe = Probe(server)
            res = driver.fanout_latency(
                server.address, n, cfg.latency_messages, rate_hz=cfg.rate_hz, hook=probe
            )
            return {
                "p50_ms": res.p50_ms,
                "p99_ms": res.p99_ms,
                "max_ms": res.max_ms,
                "samples": res.samples,
                "expected": res.delivery.expected,
                "lost": res.delivery.lost,
                "corrupt": res.delivery.out_of_order,
                "server_cpu_s": probe.samples["done"].cpu_seconds - probe.samples["joined"].cpu_seconds,
            }

        for rep, kind in alternating([*kinds, FLOOR_RELAY], cfg.repeats):
            measure(rec, "latency", str(n), kind, rep, n + 16, body)


def _wait_baseline(
    server: servers.ServerProcess, base: servers.ProcSample, timeout: float
) -> tuple[servers.ProcSample, float]:
    """Espera (acotado) a que hilos y descriptores vuelvan a la línea base."""
    start = time.perf_counter()
    now = server.sample()
    while (now.threads, now.fds) != (base.threads, base.fds) and time.perf_counter() - start < timeout:
        time.sleep(0.05)
        now = server.sample()
    return now, time.perf_counter() - start


def run_joins(rec: Recorder, cfg: Config, kinds: list[str]) -> None:
    print(f"joins (connect + handshake + :q), {cfg.joins} clients, {cfg.join_concurrency} at a time")

    def body(server: servers.ServerProcess) -> dict[str, Any]:
        driver.joins(server.address, 4, concurrency=2)  # calentamiento: imports y cachés perezosos
        base, _ = _wait_baseline(server, server.sample(), 0.0)
        time.sleep(0.2)
        base = server.sample()
        res = driver.joins(server.address, cfg.joins, concurrency=cfg.join_concurrency)
        after, settle = _wait_baseline(server, base, 5.0)
        return {
            "joins_per_s": res.joins_per_second,
            "joins": res.joins,
            "failures": res.failures,
            "threads_base": base.threads,
            "threads_after": after.threads,
            "fds_base": base.fds,
            "fds_after": after.fds,
            "back_to_baseline": (after.threads, after.fds) == (base.threads, base.fds),
            "settle_s": settle,
        }

    # ``floor+notices``, intercalado con los otros dos: el techo de un hilo por conexión
    # (el servidor mínimo que cumple el saludo, los avisos y ``:q``) bajo la misma carga;
    # ``floor+portable``, el mismo con la E/S portable de chatlib (el techo de ese diseño).
    for rep, kind in alternating([*kinds, FLOOR_NOTICES, FLOOR_PORTABLE], cfg.repeats):
        measure(rec, "joins", str(cfg.joins), kind, rep, cfg.join_concurrency * 4 + 16, body)


def transfers_per_run(cfg: Config) -> int:
    """Las ``:t`` de una corrida de transferencias (el parámetro de esas filas en ``results.csv``)."""
    return cfg.transfer_clients * cfg.transfers_per_client * cfg.transfer_rounds


def _transfer_scenario(rec: Recorder, cfg: Config, kinds: list[str], scenario: str, balance: int) -> None:
    """Todos envían sus ``:t`` a la vez, ``transfer_rounds`` veces; ``balance`` decide cuántas se aplican."""
    total = transfers_per_run(cfg)

    def body(server: servers.ServerProcess) -> dict[str, Any]:
        res = driver.transfers(
            server.address,
            cfg.transfer_clients,
            cfg.transfers_per_client,
            balance=balance,
            rounds=cfg.transfer_rounds,
        )
        return {
            "transfers_per_s": res.transfers_per_second,
            "transfers": res.transfers,
            "succeeded": res.succeeded,
            "insufficient": res.insufficient,
            "funds_before": res.funds_before,
            "funds_after": res.funds_after,
            "expected_total": res.expected_total,
            "replies_missing": res.replies_missing,
            "conserved": res.conserved,
        }

    for rep, kind in alternating(kinds, cfg.repeats):
        measure(rec, scenario, str(total), kind, rep, cfg.transfer_clients + 16, body)


def run_transfers(rec: Recorder, cfg: Config, kinds: list[str]) -> None:
    """Saldos de 1000: la mayoría de las ``:t`` se rechazan por fondos (la carga de siempre)."""
    print(
        f"transfers ({cfg.transfer_clients} clients x {cfg.transfers_per_client} ':t' each, all at once, "
        f"{cfg.transfer_rounds} round(s))"
    )
    _transfer_scenario(rec, cfg, kinds, "transfers", 1000)


def run_transfers_accepted(rec: Recorder, cfg: Config, kinds: list[str]) -> None:
    """Como ``transfers``, pero con saldos tan grandes que casi todas las ``:t`` se aplican."""
    print(f"transfers that succeed ({cfg.transfer_clients} clients x {cfg.transfers_per_client} ':t')")
    _transfer_scenario(rec, cfg, kinds, "transfers_ok", ACCEPTED_BALANCE)


ACCEPTED_BALANCE = 10**9
FLOOR = "floor"
FLOOR_NOTICES = "floor+notices"
FLOOR_PORTABLE = "floor+portable"
FLOOR_RELAY = "floor+relay"


def run_memory(rec: Recorder, cfg: Config, kinds: list[str]) -> None:
    """RSS por cliente conectado y quieto, con el piso (un hilo quieto por conexión) en la misma corrida."""
    print("memory per idle connected client (threaded, asyncio and the one-idle-thread floor)")
    for n in cfg.ns:

        def body(server: servers.ServerProcess, n: int = n) -> dict[str, Any]:
            probe = Probe(server)
            joined = driver.idle(server.address, n, hook=probe)
            start, connected = probe.samples["start"], probe.samples["joined"]
            return {
                "clients": joined,
                "rss_start_kib": start.rss_kib,
                "rss_connected_kib": connected.rss_kib,
                "rss_per_client_kib": (connected.rss_kib - start.rss_kib) / joined,
                "threads_connected": connected.threads,
            }

        for rep, kind in alternating([*kinds, FLOOR], cfg.repeats):
            measure(rec, "memory", str(n), kind, rep, n + 16, body)


STALL_VARIANTS = ("none", "held", "overflow")


def run_stall(rec: Recorder, cfg: Config, kinds: list[str]) -> None:
    print(f"stalled reader among {cfg.stall_clients} clients (burst, then {cfg.rate_hz:g} msg/s paced)")
    for variant in STALL_VARIANTS:
        burst = cfg.stall_burst_overflow if variant == "overflow" else cfg.stall_burst_held

        def body(server: servers.ServerProcess, variant: str = variant, burst: int = burst) -> dict[str, Any]:
            res = driver.stalled_reader(
                server.address,
                cfg.stall_clients,
                stalled=variant != "none",
                burst_bytes=burst,
                messages=cfg.stall_messages,
                rate_hz=cfg.rate_hz,
            )
            return {
                "p50_ms": res.latency.p50_ms,
                "p99_ms": res.latency.p99_ms,
                "max_ms": res.latency.max_ms,
                "burst_s": res.burst_seconds,
                "lost": res.latency.delivery.lost + res.burst_delivery.lost,
                "corrupt": res.latency.delivery.out_of_order + res.burst_delivery.out_of_order,
                "cut": res.stalled_cut,
            }

        for rep, kind in alternating(kinds, cfg.repeats):
            measure(rec, "stall", variant, kind, rep, cfg.stall_clients + 16, body)


def run_fairness(rec: Recorder, cfg: Config, kinds: list[str]) -> None:
    print(
        f"flow-control fairness ({cfg.fair_clients} clients: one floods for {cfg.fair_seconds:g} s, "
        "one reads at 1 MB/s, one at 16 KiB/s)"
    )

    def body(server: servers.ServerProcess) -> dict[str, Any]:
        res = driver.fairness(server.address, cfg.fair_clients, seconds=cfg.fair_seconds)
        return {
            "flood_kib_s": res.flood_bytes_per_s / 1024,
            "fast_reader_kib_s": res.fast_reader_bytes_per_s / 1024,
            "slow_reader_kib_s": res.slow_reader_bytes_per_s / 1024,
            "readers_min_kib_s": res.readers_bytes_per_s_min / 1024,
            "paced_cut": res.paced_cut,
            "readers_cut": res.readers_cut,
        }

    for rep, kind in alternating(kinds, cfg.repeats):
        measure(rec, "fairness", str(cfg.fair_clients), kind, rep, cfg.fair_clients + 16, body)


# --- informe ------------------------------------------------------------------------------


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else float("nan")


def _num(value: float, digits: int = 0) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def _ceiling_lost(rec: Recorder, param: str) -> str:
    """Líneas perdidas o desordenadas por ``floor+relay`` en la difusión y en la latencia."""
    parts = []
    for scenario in ("fanout", "latency"):
        bad = sum(rec.values(scenario, param, FLOOR_RELAY, "lost")) + sum(
            rec.values(scenario, param, FLOOR_RELAY, "corrupt")
        )
        errs = sum(
            1
            for r in rec.errors()
            if (r["scenario"], r["param"], r["server"]) == (scenario, param, FLOOR_RELAY)
        )
        parts.append(f"{int(bad)}" + (f" +{errs} err" if errs else ""))
    return " / ".join(parts)


def summary_tables(rec: Recorder, cfg: Config, kinds: list[str]) -> list[str]:
    """Tablas markdown con la mediana por servidor y la razón A/B."""
    two = kinds == [A, B]
    out: list[str] = []

    def table(title: str, note: str, header: list[str], rows: list[list[str]]) -> None:
        out.extend([f"### {title}", "", note, ""])
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|")
        out.extend("| " + " | ".join(row) + " |" for row in rows)
        out.append("")

    def cols(scenario: str, param: str, metric: str, digits: int = 0) -> list[str]:
        values = [rec.median(scenario, param, k, metric) for k in kinds]
        cells = [_num(v, digits) for v in values]
        if two:
            cells.append(_num(ratio(values[0], values[1]), 2))
        return cells

    names = [f"{k}" for k in kinds] + (["A/B"] if two else [])

    def lost(scenario: str, param: str) -> str:
        parts = []
        for k in kinds:
            total = sum(rec.values(scenario, param, k, "lost")) + sum(
                rec.values(scenario, param, k, "corrupt")
            )
            errs = sum(
                1 for r in rec.errors() if (r["scenario"], r["param"], r["server"]) == (scenario, param, k)
            )
            parts.append(f"{int(total)}" + (f" +{errs} err" if errs else ""))
        return " / ".join(parts)

    rows = []
    for n in cfg.ns:
        p = str(n)
        rows.append(
            [
                p,
                *cols("fanout", p, "deliveries_per_s"),
                *cols("fanout", p, "server_cpu_us_per_delivery", 3),
                lost("fanout", p),
            ]
        )
    table(
        "Fan-out throughput (deliveries/s, higher is better)",
        f"One sender floods N receivers with {cfg.flood_deliveries:,} deliveries per run; "
        "server CPU is µs of server process CPU per delivery (lower is better).",
        ["N", *[f"{n} deliv/s" for n in names], *[f"{n} CPU µs/deliv" for n in names], "lost (A / B)"],
        rows,
    )

    rows = []
    for n in cfg.ns:
        p = str(n)
        rows.append(
            [p, *cols("latency", p, "p50_ms", 2), *cols("latency", p, "p99_ms", 2), lost("latency", p)]
        )
    table(
        f"Delivery latency (ms, sender paced at {cfg.rate_hz:g} msg/s, lower is better)",
        f"{cfg.latency_messages} messages per run; every receiver timestamps every message.",
        ["N", *[f"{n} p50" for n in names], *[f"{n} p99" for n in names], "lost (A / B)"],
        rows,
    )

    rows = []
    for n in cfg.ns:
        p = str(n)
        flood, p99 = (
            rec.median("fanout", p, FLOOR_RELAY, "deliveries_per_s"),
            rec.median("latency", p, FLOOR_RELAY, "p99_ms"),
        )
        if math.isnan(flood) and math.isnan(p99):
            continue
        threaded = [
            rec.median(s, p, A, m) for s, m in (("fanout", "deliveries_per_s"), ("latency", "p99_ms"))
        ]
        reference = [
            rec.median(s, p, B, m) for s, m in (("fanout", "deliveries_per_s"), ("latency", "p99_ms"))
        ]
        rows.append(
            [
                p,
                _num(flood),
                _num(ratio(flood, reference[0]), 2),
                _num(ratio(threaded[0], flood), 2),
                _num(p99, 2),
                _num(ratio(p99, reference[1]), 2),
                _num(ratio(threaded[1], p99), 2),
                _ceiling_lost(rec, p),
            ]
        )
    if rows:
        table(
            "Ceilings of one thread per connection for fan-out and latency (floor+relay)",
            "`floor+relay` is `bench/floor_server.py --notices --relay`, run alternating with the others "
            "in the fan-out and latency rows: a thread per connection with blocking sockets that does the "
            "handshake and the notices and relays each `recv`'s complete lines to the others as one block "
            "(`name: ` before each line, one `sendall` per receiver), and nothing else: no commands, "
            "emojis, sanitising, rate limits or queues.",
            [
                "N",
                "floor+relay deliv/s",
                "floor+relay / asyncio",
                "threaded / floor+relay",
                "floor+relay p99 ms",
                "floor+relay / asyncio p99",
                "threaded / floor+relay p99",
                "lost (fan-out / latency)",
            ],
            rows,
        )

    rows = []
    for n in cfg.ns:
        p = str(n)
        rows.append(
            [
                p,
                *cols("fanout", p, "rss_per_client_kib", 1),
                *cols("fanout", p, "threads_connected"),
                lost("fanout", p),
            ]
        )
    table(
        "Memory and threads with N+1 clients connected",
        "RSS growth from an idle server to N+1 joined clients, divided by N+1 (KiB per client); "
        "threads of the server process while they are connected.",
        ["N", *[f"{n} KiB/client" for n in names], *[f"{n} threads" for n in names], "lost (A / B)"],
        rows,
    )

    p = str(cfg.joins)
    rows = [["joins/s", *cols("joins", p, "joins_per_s")]]
    threaded_joins = rec.median("joins", p, A, "joins_per_s") if A in kinds else math.nan
    for ceiling, label in ((FLOOR_NOTICES, "ceiling"), (FLOOR_PORTABLE, "ceiling with chatlib's I/O")):
        floor_joins = rec.median("joins", p, ceiling, "joins_per_s")
        if not math.isnan(floor_joins):
            blank = [""] * (len(names) - 1)
            rows.append([f"{ceiling} joins/s ({label})", _num(floor_joins), *blank])
            rows.append([f"threaded / {ceiling}", _num(ratio(threaded_joins, floor_joins), 2), *blank])
    for metric in ("threads_base", "threads_after", "fds_base", "fds_after", "failures"):
        rows.append([metric, *cols("joins", p, metric)])
    rows.append(
        [
            "back to baseline (all runs)",
            *[
                str(
                    all(v == 1.0 for v in rec.values("joins", p, k, "back_to_baseline"))
                    and bool(rec.values("joins", p, k, "back_to_baseline"))
                )
                for k in kinds
            ],
            *([""] if two else []),
        ]
    )
    table(
        "Joins (connect + handshake + :q)",
        f"{cfg.joins} clients, {cfg.join_concurrency} in flight; thread and descriptor counts of the "
        "server before and after (waiting up to 5 s for them to settle). `floor+notices` is "
        "`bench/floor_server.py --notices` (a thread per connection with blocking sockets, the same "
        "handshake, the connected/disconnected notices to the others and `:q`, nothing else): the "
        "ceiling of one thread per connection on this machine, in the first column. `floor+portable` "
        "adds `--portable`: chatlib's I/O (non-blocking sockets; `recv` and `accept` first and, only "
        "when nothing is there, a `poll` with a deadline and the wake-up socket; the close that waits "
        "for the client's EOF), the same kinds of system calls per join as chatlib and nothing else.",
        ["metric", *names],
        rows,
    )

    p = str(transfers_per_run(cfg))
    rows = [["transfers/s", *cols("transfers", p, "transfers_per_s")]]
    for metric in (
        "succeeded",
        "insufficient",
        "funds_before",
        "funds_after",
        "expected_total",
        "replies_missing",
    ):
        rows.append([metric, *cols("transfers", p, metric)])
    rows.append(
        [
            "money conserved (all runs)",
            *[
                str(
                    bool(rec.values("transfers", p, k, "conserved"))
                    and all(v == 1.0 for v in rec.values("transfers", p, k, "conserved"))
                )
                for k in kinds
            ],
            *([""] if two else []),
        ]
    )
    table(
        "Transfers over sockets",
        f"{cfg.transfer_clients} clients each send {cfg.transfers_per_client} `:t` to random others at once, "
        f"{cfg.transfer_rounds} time(s) per run (each round starts when every reply of the one before "
        "has arrived; the time is the rounds' sum); sum of everybody's `:funds` before the first round and "
        "after the last.",
        ["metric", *names],
        rows,
    )

    p = str(transfers_per_run(cfg))
    if any(r["scenario"] == "transfers_ok" for r in rec.rows):
        rows = [["transfers/s", *cols("transfers_ok", p, "transfers_per_s")]]
        for metric in ("succeeded", "insufficient", "funds_before", "funds_after", "replies_missing"):
            rows.append([metric, *cols("transfers_ok", p, metric)])
        table(
            "Transfers over sockets, most succeeding",
            f"The same load with {ACCEPTED_BALANCE:,} dollars per client, so the bank moves money "
            "on (almost) every `:t`.",
            ["metric", *names],
            rows,
        )

    if any(r["scenario"] == "memory" for r in rec.rows):
        rows = []
        for n in cfg.ns:
            p = str(n)
            values = [rec.median("memory", p, k, "rss_per_client_kib") for k in kinds]
            floor = rec.median("memory", p, FLOOR, "rss_per_client_kib")
            cells = [_num(v, 1) for v in values] + [_num(floor, 1)]
            if A in kinds:
                cells.append(_num(values[kinds.index(A)] - floor, 1))
            if two:
                cells.append(_num(ratio(values[0], values[1]), 2))
            rows.append([p, *cells])
        table(
            "Memory per idle connected client (RSS KiB)",
            "N clients join and stay quiet; (VmRSS with them connected − VmRSS at start) / N. "
            "`floor` is `bench/floor_server.py`: one idle thread per connection and nothing else.",
            [
                "N",
                *[f"{k} KiB" for k in kinds],
                "floor KiB",
                *(["threaded − floor"] if A in kinds else []),
                *(["A/B"] if two else []),
            ],
            rows,
        )

    rows = []
    for variant in STALL_VARIANTS:
        cut = " / ".join(
            str(int(sum(rec.values("stall", variant, k, "cut"))))
            + f"/{len(rec.values('stall', variant, k, 'cut'))}"
            for k in kinds
        )
        rows.append(
            [
                variant,
                *cols("stall", variant, "p99_ms", 2),
                *cols("stall", variant, "burst_s", 2),
                cut,
                lost("stall", variant),
            ]
        )
    stall_rows = rows
    p = str(cfg.fair_clients)
    rows = [
        [metric, *cols("fairness", p, metric, 1)]
        for metric in (
            "flood_kib_s",
            "fast_reader_kib_s",
            "slow_reader_kib_s",
            "readers_min_kib_s",
            "paced_cut",
            "readers_cut",
        )
    ]
    fairness_rows = rows
    rows = stall_rows
    table(
        f"Stalled reader among {cfg.stall_clients} clients",
        "`none`: everybody reads. `held`: one client never reads and the burst fills its kernel buffers "
        "but stays under the server's per-client queue limit. `overflow`: the burst exceeds it, so the "
        "server must cut that client. p99 is the other readers' latency in the paced phase; burst_s is "
        "how long the burst took to reach every other reader.",
        [
            "variant",
            *[f"{n} p99 ms" for n in names],
            *[f"{n} burst s" for n in names],
            "stalled cut (A / B)",
            "lost (A / B)",
        ],
        rows,
    )
    if any(r["scenario"] == "fairness" for r in rec.rows):
        table(
            f"Flow-control fairness among {cfg.fair_clients} clients",
            f"One client floods for {cfg.fair_seconds:g} s; one reader reads at 1 MB/s and one at 16 KiB/s, "
            "the rest as fast as they can. KiB/s the server accepted from the flooder and delivered to "
            "each paced reader; `paced_cut`/`readers_cut`: readers the server disconnected (should be 0: "
            "everybody keeps reading).",
            ["metric", *names],
            fairness_rows,
        )
    return out


def targets(rec: Recorder, cfg: Config, kinds: list[str]) -> list[tuple[str, bool | None, str]]:
    """Los objetivos del issue 4, evaluados sobre esta corrida."""
    if A not in kinds:
        return []
    big = str(max(cfg.ns))
    out: list[tuple[str, bool | None, str]] = []

    def clean(scenario: str, param: str) -> bool:
        runs = rec.values(scenario, param, A, "lost")
        bad = sum(rec.values(scenario, param, A, "lost")) + sum(rec.values(scenario, param, A, "corrupt"))
        errs = [r for r in rec.errors() if (r["scenario"], r["param"], r["server"]) == (scenario, param, A)]
        return bool(runs) and bad == 0 and not errs

    ok = clean("fanout", big) and clean("latency", big)
    out.append(
        (
            f"{big} simultaneous clients chatting, every message delivered",
            ok,
            "fan-out and latency runs at N=" + big,
        )
    )
    if B in kinds and "100" in [str(n) for n in cfg.ns]:
        a, b = (
            rec.median("fanout", "100", A, "deliveries_per_s"),
            rec.median("fanout", "100", B, "deliveries_per_s"),
        )
        out.append(
            (
                "fan-out throughput at 100 clients >= asyncio",
                a >= b,
                f"{_num(a)} vs {_num(b)} deliveries/s (A/B {ratio(a, b):.2f})",
            )
        )
    a99 = rec.median("latency", big, A, "p99_ms")
    b99 = rec.median("latency", big, B, "p99_ms") if B in kinds else float("nan")
    met = a99 < 50 and (math.isnan(b99) or a99 <= b99) and clean("latency", big)
    detail = f"{a99:.2f} ms vs {b99:.2f} ms"
    top99 = rec.median("latency", big, FLOOR_RELAY, "p99_ms")
    if not math.isnan(top99):
        # El techo medido en la misma corrida (en latencia, menos es mejor).
        detail += f"; {FLOOR_RELAY} {top99:.2f} ms ({ratio(top99, b99):.2f})"
    out.append((f"p99 < 50 ms at {big} clients (20 msg/s) and <= asyncio p99", met, detail))
    none = rec.median("stall", "none", A, "p99_ms")
    worst = max(rec.worst("stall", v, A, "p99_ms") for v in ("held", "overflow"))
    met = (worst - none) < 100 and clean("stall", "held") and clean("stall", "overflow")
    out.append(
        (
            "a stalled reader among 100 changes others' p99 by < 100 ms",
            met,
            f"{none:.2f} ms -> worst {worst:.2f} ms, all delivered: "
            f"{clean('stall', 'held') and clean('stall', 'overflow')}",
        )
    )
    if B in kinds:
        out += issue12_targets(rec, cfg)
    return out


def issue12_targets(rec: Recorder, cfg: Config) -> list[tuple[str, bool | None, str]]:
    """Los objetivos del issue 12: cada fila contra la referencia asyncio (medianas)."""
    out: list[tuple[str, bool | None, str]] = []

    def versus(name: str, scenario: str, param: str, metric: str, ceiling: str | None = None) -> None:
        a, b = rec.median(scenario, param, A, metric), rec.median(scenario, param, B, metric)
        if not (math.isnan(a) or math.isnan(b)):
            detail = f"{_num(a)} vs {_num(b)} (A/B {ratio(a, b):.2f})"
            top = math.nan if ceiling is None else rec.median(scenario, param, ceiling, metric)
            if not math.isnan(top):
                # Un techo medido en la misma corrida, junto al objetivo.
                detail += f"; {ceiling} {_num(top)} ({ratio(top, b):.2f})"
            out.append((name, a >= b, detail))

    for n in cfg.ns:
        versus(f"fan-out at {n} receivers >= asyncio", "fanout", str(n), "deliveries_per_s", FLOOR_RELAY)
    versus("joins/s >= asyncio", "joins", str(cfg.joins), "joins_per_s", ceiling=FLOOR_PORTABLE)
    total = str(transfers_per_run(cfg))
    versus("transfers/s (most rejected) >= asyncio", "transfers", total, "transfers_per_s")
    versus("transfers/s (most succeed) >= asyncio", "transfers_ok", total, "transfers_per_s")
    big = str(max(cfg.ns))
    a, floor = (rec.median("memory", big, k, "rss_per_client_kib") for k in (A, FLOOR))
    if not (math.isnan(a) or math.isnan(floor)):
        out.append(
            (
                f"memory per client at {big} <= floor + 6 KiB",
                a <= floor + 6,
                f"{a:.1f} KiB vs floor {floor:.1f} KiB (+{a - floor:.1f})",
            )
        )
    return out


def machine_info() -> list[str]:
    """Fecha, CPU y versiones, para que la tabla se pueda leer en contexto."""

    def sh(*cmd: str) -> str:
        try:
            return subprocess.run(
                cmd, capture_output=True, text=True, timeout=10, cwd=servers.ROOT
            ).stdout.strip()
        except OSError:
            return "?"

    model = next(
        (line.split(":", 1)[1].strip() for line in sh("lscpu").splitlines() if line.startswith("Model name")),
        "?",
    )
    dirty = sh("git", "status", "--porcelain", "--", "chatlib")
    return [
        f"- date: {dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- machine: `nproc` = {sh('nproc')}, {model}, {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}; repository at `{sh('git', 'rev-parse', '--short', 'HEAD')}`, "
        "chatlib/server.py last changed in "
        f"`{sh('git', 'log', '-1', '--format=%h', '--', 'chatlib/server.py') or '?'}`"
        + (" (chatlib/ has uncommitted changes in the working tree)" if dirty else ""),
    ]


def write_outputs(rec: Recorder, cfg: Config, kinds: list[str], lines: list[str], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "results.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["scenario", "param", "server", "rep", "metric", "value"])
        writer.writeheader()
        writer.writerows(rec.rows)
    (out_dir / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    plot(rec, cfg, kinds, out_dir)


def plot(rec: Recorder, cfg: Config, kinds: list[str], out_dir: Path) -> None:
    """Throughput y latencia contra N, los dos servidores en el mismo gráfico.

    Cada gráfico se dibuja solo si su escenario corrió (``--only latency`` no tiene throughput).
    """
    ran = {r["scenario"] for r in rec.rows if "error" not in r}
    if not ran & {"fanout", "latency"}:
        print("no fan-out or latency runs: no plots")
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {A: "tab:blue", B: "tab:orange"}
    ns = list(cfg.ns)
    if "fanout" in ran:
        _plot_throughput(plt, rec, kinds, ns, colors, out_dir)
    if "latency" in ran:
        _plot_latency(plt, rec, cfg, kinds, ns, colors, out_dir)


def _plot_throughput(
    plt: Any, rec: Recorder, kinds: list[str], ns: list[int], colors: dict[str, str], out_dir: Path
) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind in kinds:
        med = [rec.median("fanout", str(n), kind, "deliveries_per_s") for n in ns]
        lo = [min(rec.values("fanout", str(n), kind, "deliveries_per_s") or [math.nan]) for n in ns]
        hi = [max(rec.values("fanout", str(n), kind, "deliveries_per_s") or [math.nan]) for n in ns]
        ax.plot(ns, med, "o-", color=colors.get(kind), label=kind)
        ax.fill_between(ns, lo, hi, color=colors.get(kind), alpha=0.2)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="receivers N",
        ylabel="deliveries / s",
        title="Fan-out throughput (flood)",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "throughput.png", dpi=120)
    plt.close(fig)


def _plot_latency(
    plt: Any,
    rec: Recorder,
    cfg: Config,
    kinds: list[str],
    ns: list[int],
    colors: dict[str, str],
    out_dir: Path,
) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind in kinds:
        for metric, style in (("p50_ms", "o--"), ("p99_ms", "s-")):
            values = [rec.median("latency", str(n), kind, metric) for n in ns]
            ax.plot(ns, values, style, color=colors.get(kind), label=f"{kind} {metric[:3]}")
    ax.axhline(50, color="gray", linestyle=":", label="target p99 50 ms")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="receivers N",
        ylabel="latency (ms)",
        title=f"Delivery latency, sender paced at {cfg.rate_hz:g} msg/s",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "latency.png", dpi=120)
    plt.close(fig)


SCENARIOS: dict[str, Callable[[Recorder, Config, list[str]], None]] = {
    "fanout": run_fanout,
    "latency": run_latency,
    "joins": run_joins,
    "transfers": run_transfers,
    "stall": run_stall,
    "transfers_ok": run_transfers_accepted,
    "memory": run_memory,
    "fairness": run_fairness,
}


def publish(run: str) -> int:
    """Copia una corrida completa elegida a ``bench/results/`` (lo único versionado).

    Las corridas se escriben en ``bench/runs/`` (ignorado por git), así medir
    nunca modifica archivos versionados; publicar es una decisión explícita.
    Una corrida rápida no se publica: sus números no son comparables.
    """
    if run == "latest":
        full = sorted(RUNS.glob("*-full")) if RUNS.is_dir() else []
        if not full:
            print(f"no full run in {RUNS}; run `make bench` first", file=sys.stderr)
            return 1
        source = full[-1]
    else:
        source = Path(run)
    missing = [name for name in OUTPUT_FILES if not (source / name).is_file()]
    if missing:
        print(f"{source} is not a finished run (missing {', '.join(missing)})", file=sys.stderr)
        return 1
    if "- mode: quick" in (source / "summary.md").read_text(encoding="utf-8"):
        print(f"{source} is a quick run; publish only full runs", file=sys.stderr)
        return 1
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_FILES:
        shutil.copy2(source / name, RESULTS / name)
    print(f"published {source} -> {RESULTS}")
    return readme.main()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition (about a minute)")
    parser.add_argument("--servers", default=f"{A},{B}", help=f"comma list of {A},{B} (default both)")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma list of scenarios to run")
    parser.add_argument("--repeats", type=int, help="override repetitions per server")
    parser.add_argument(
        "--out", type=Path, help="output folder (default: a new bench/runs/<date>-<full|quick>/, git-ignored)"
    )
    parser.add_argument(
        "--publish",
        nargs="?",
        const="latest",
        metavar="RUN_DIR",
        help="copy a finished full run (default: the newest one) into the committed bench/results/ and exit",
    )
    args = parser.parse_args(argv)
    if args.publish is not None:
        return publish(args.publish)
    if args.out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        args.out = RUNS / f"{stamp}-{'quick' if args.quick else 'full'}"

    cfg = QUICK if args.quick else FULL
    if args.repeats:
        cfg = Config(**{**cfg.__dict__, "repeats": args.repeats})
    kinds = [k for k in args.servers.split(",") if k]
    if A in kinds and not servers.threaded_available():
        print("chatlib/server.py does not exist yet: running the asyncio reference only", file=sys.stderr)
        kinds.remove(A)
    limit = servers.raise_fd_limit()
    # SIGTERM -> SystemExit, así los ``finally`` detienen los servidores.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    rec = Recorder()
    started = time.perf_counter()
    print(f"servers: {', '.join(kinds)}; fd limit {limit}; {'quick' if args.quick else 'full'} run")
    for name in args.only.split(","):
        SCENARIOS[name](rec, cfg, kinds)
    elapsed = time.perf_counter() - started

    lines = [
        "## Results",
        "",
        *machine_info(),
        f"- mode: {'quick' if args.quick else 'full'}",
        f"- run: `{' '.join(['bench/run.py', *(argv if argv is not None else sys.argv[1:])])}`, "
        f"{elapsed / 60:.1f} min, "
        f"{cfg.repeats} repetition(s) per server alternating A/B; medians shown; "
        f"A = {A} (chatlib.server), B = {B} (bench/async_server.py)",
        "",
    ]
    lines += summary_tables(rec, cfg, kinds)
    goals = targets(rec, cfg, kinds)
    if goals:
        lines += ["### Targets (issues 4 and 12)", "", "| target | met | measured |", "|---|---|---|"]
        lines += [f"| {name} | {'yes' if met else 'NO'} | {detail} |" for name, met, detail in goals]
        lines.append("")
    if rec.errors():
        lines += (
            ["### Errors", ""]
            + [
                f"- {r['scenario']} {r['param']} {r['server']} rep {r['rep']}: {r['value']}"
                for r in rec.errors()
            ]
            + [""]
        )
    print()
    print("\n".join(lines))
    write_outputs(rec, cfg, kinds, lines, args.out)
    print(f"wrote {args.out}/results.csv, summary.md, throughput.png, latency.png")
    failed = (
        bool(rec.errors())
        or any(
            r["metric"] in ("lost", "corrupt", "failures", "replies_missing") and r["value"] != 0
            for r in rec.rows
        )
        or any(r["metric"] == "conserved" and not r["value"] for r in rec.rows)
    )
    if failed:
        print("FAILURE: some message was lost, some run failed or money was not conserved", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
