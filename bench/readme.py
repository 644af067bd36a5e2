"""Regenera las tablas de resultados de ``README.md`` y ``bench/README.md`` desde ``bench/results/``.

Nada se escribe a mano: ``bench/run.py --publish`` copia una corrida completa
y llama a este módulo, que reemplaza lo que está entre los marcadores
``<!-- bench:NOMBRE -->`` y ``<!-- /bench:NOMBRE -->`` de cada archivo.

Uso: ``.venv/bin/python bench/readme.py`` (después de publicar una corrida).
"""

from __future__ import annotations

import csv
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
A, B, FLOOR, RELAY = "threaded", "asyncio", "floor", "floor+relay"

Key = tuple[str, str, str, str]


def load(path: Path) -> dict[Key, list[float]]:
    """Valores numéricos de ``results.csv`` por (escenario, parámetro, servidor, métrica)."""
    values: dict[Key, list[float]] = defaultdict(list)
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            try:
                value = float(row["value"])
            except ValueError:
                value = 1.0 if row["value"] == "True" else 0.0 if row["value"] == "False" else float("nan")
            values[(row["scenario"], row["param"], row["server"], row["metric"])].append(value)
    return values


def _params(values: dict[Key, list[float]], scenario: str) -> list[str]:
    return sorted({k[1] for k in values if k[0] == scenario}, key=lambda p: (len(p), p))


def _big(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.1f} M"
    if value >= 1e5:
        return f"{value / 1e3:.0f} k"
    return f"{value:,.0f}"


def performance_table(values: dict[Key, list[float]], summary: str) -> str:
    """La tabla corta del README: medianas, threaded / asyncio y su razón."""

    def med(scenario: str, param: str, server: str, metric: str) -> float:
        found = values.get((scenario, param, server, metric))
        return statistics.median(found) if found else float("nan")

    def runs(scenario: str) -> int:
        reps = {
            k for k in values if k[0] == scenario and k[3] in ("lost", "failures", "conserved", "clients")
        }
        return max((len(values[k]) for k in reps), default=0)

    rows: list[tuple[str, str, str, str]] = []
    for n in _params(values, "fanout"):
        a, b = med("fanout", n, A, "deliveries_per_s"), med("fanout", n, B, "deliveries_per_s")
        top = med("fanout", n, RELAY, "deliveries_per_s")
        # El techo medido en la misma corrida (corridas publicadas antes de ``--relay`` no lo tienen).
        note = f"; minimal thread relay {_big(top)}" if top == top else ""
        rows.append((f"fan-out flood, {n} receivers (deliveries/s{note})", _big(a), _big(b), f"{a / b:.2f}"))
    latency = _params(values, "latency")
    if latency:
        n = latency[-1]
        a50, b50 = med("latency", n, A, "p50_ms"), med("latency", n, B, "p50_ms")
        a99, b99 = med("latency", n, A, "p99_ms"), med("latency", n, B, "p99_ms")
        top = med("latency", n, RELAY, "p99_ms")
        note = f"; minimal thread relay {top:.1f} p99" if top == top else ""
        rows.append(
            (
                f"latency p50 / p99 at {n} receivers, 20 msg/s (ms, lower is better{note})",
                f"{a50:.1f} / {a99:.1f}",
                f"{b50:.1f} / {b99:.1f}",
                f"{a50 / b50:.2f} / {a99 / b99:.2f}",
            )
        )
    if ("stall", "overflow", A, "p99_ms") in values:
        a, b = med("stall", "overflow", A, "p99_ms"), med("stall", "overflow", B, "p99_ms")
        rows.append(
            (
                "others' p99 with a stalled reader among 100 (ms, lower is better)",
                f"{a:.2f}",
                f"{b:.2f}",
                f"{a / b:.2f}",
            )
        )
    memory = _params(values, "memory")
    if memory:
        n = memory[-1]
        a, b = med("memory", n, A, "rss_per_client_kib"), med("memory", n, B, "rss_per_client_kib")
        floor = med("memory", n, FLOOR, "rss_per_client_kib")
        rows.append(
            (
                f"RSS per idle client at {n} clients (KiB; floor {floor:.1f}, "
                f"threaded − floor {a - floor:.1f})",
                f"{a:.1f}",
                f"{b:.1f}",
                f"{a / b:.2f}",
            )
        )
    for param in _params(values, "joins"):
        a, b = med("joins", param, A, "joins_per_s"), med("joins", param, B, "joins_per_s")
        floor = med("joins", param, "floor+notices", "joins_per_s")
        if floor != floor:  # corridas publicadas antes de ``--notices``
            floor = med("joins", param, FLOOR, "joins_per_s")
        note = f"; minimal thread server {_big(floor)}" if floor == floor else ""
        portable = med("joins", param, "floor+portable", "joins_per_s")
        if portable == portable:
            note += f", with chatlib's I/O {_big(portable)}"
        rows.append((f"joins per second (connect, handshake, `:q`{note})", _big(a), _big(b), f"{a / b:.2f}"))
    for scenario, label in (("transfers", "most rejected for funds"), ("transfers_ok", "most succeed")):
        for param in _params(values, scenario):
            a, b = med(scenario, param, A, "transfers_per_s"), med(scenario, param, B, "transfers_per_s")
            rows.append((f"transfers per second, {label}, money conserved", _big(a), _big(b), f"{a / b:.2f}"))
    date = re.search(r"- date: (\S+)", summary)
    machine = re.search(r"- machine: (.+)", summary)
    python = re.search(r"- (Python [0-9.]+)", summary)
    reps = max(runs(s) for s in ("fanout", "joins", "transfers", "memory"))
    lines = [
        f"Run of {date.group(1) if date else '?'} on {machine.group(1) if machine else '?'} "
        f"({python.group(1) if python else 'Python'}), threaded / asyncio, medians of {reps} "
        "alternating runs (every run is in `bench/results/results.csv`):",
        "",
        "| measurement | threaded | asyncio | ratio |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {a} | {b} | {r} |" for name, a, b, r in rows),
    ]
    return "\n".join(lines)


def replace_block(text: str, name: str, body: str) -> str:
    """Reemplaza el bloque entre los marcadores ``name``; falla si no están."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"markers {start} ... {end} not found")
    return pattern.sub(lambda _: f"{start}\n{body.strip()}\n{end}", text, count=1)


def main() -> int:
    values = load(RESULTS / "results.csv")
    summary = (RESULTS / "summary.md").read_text(encoding="utf-8")
    readme = ROOT / "README.md"
    readme.write_text(
        replace_block(readme.read_text(encoding="utf-8"), "table", performance_table(values, summary)),
        encoding="utf-8",
    )
    bench_readme = ROOT / "bench" / "README.md"
    body = summary.replace("## Results", "", 1).strip()
    body += "\n\n![fan-out throughput](results/throughput.png)\n![delivery latency](results/latency.png)"
    bench_readme.write_text(
        replace_block(bench_readme.read_text(encoding="utf-8"), "results", body), encoding="utf-8"
    )
    print(f"regenerated {readme.relative_to(ROOT)} and {bench_readme.relative_to(ROOT)} from {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
