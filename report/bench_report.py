"""La sección de benchmark del informe, generada desde ``bench/results/results.csv``.

Nada de esta sección se escribe a mano: una corrida nueva de ``bench/run.py``
que se confirme en el repositorio cambia la tabla, las frases y la figura.
Cada fila compara la mediana de las repeticiones de ambos servidores y dice
«dentro del ruido» cuando los rangos mínimo–máximo se superponen.
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "results.csv"
SERVERS = ("threaded", "asyncio")

# (escenario, métrica) → (rótulo en castellano, unidad, decimales, ¿más es mejor?)
METRICS: dict[tuple[str, str], tuple[str, str, int, bool]] = {
    ("fanout", "deliveries_per_s"): ("difusión", "entregas/s", 0, True),
    ("fanout", "server_cpu_us_per_delivery"): ("CPU del servidor por entrega", "µs", 3, False),
    ("latency", "p50_ms"): ("latencia p50, 20 msj/s", "ms", 2, False),
    ("latency", "p99_ms"): ("latencia p99, 20 msj/s", "ms", 2, False),
    ("fanout", "rss_per_client_kib"): ("memoria por cliente", "KiB", 1, False),
    ("fanout", "threads_connected"): ("hilos del servidor", "hilos", 0, False),
    ("joins", "joins_per_s"): ("altas (conexión, registro, :q)", "altas/s", 0, True),
    ("transfers", "transfers_per_s"): ("transferencias :t", ":t/s", 0, True),
    ("transfers_ok", "transfers_per_s"): ("transferencias :t, casi todas aceptadas", ":t/s", 0, True),
    ("memory", "rss_per_client_kib"): ("memoria por cliente quieto", "KiB", 1, False),
    ("stall", "p99_ms"): ("p99 de los demás, lector detenido", "ms", 2, False),
    ("fairness", "flood_kib_s"): ("equidad: lo que se lee del emisor que inunda", "KiB/s", 0, True),
    ("fairness", "readers_min_kib_s"): ("equidad: el lector libre más lento recibe", "KiB/s", 0, True),
    ("fairness", "slow_reader_kib_s"): ("equidad: el lector a 16 KiB/s recibe", "KiB/s", 1, True),
}
"""Solo se comparan estas métricas; un escenario nuevo sin entrada aquí no aparece en la tabla."""

FLOOR = "floor"
"""En el escenario ``memory`` hay un tercer servidor: un hilo quieto por conexión y nada más."""

CEILINGS = ("floor+notices", "floor+portable")
"""En ``joins``, dos techos de un hilo por conexión: con sockets bloqueantes y con la E/S de chatlib."""

RELAY = "floor+relay"
"""En ``fanout`` y ``latency``, el techo de un hilo por conexión que solo reenvía el chat."""

STALL_VARIANTS = {
    "none": "todos leen",
    "held": "uno no lee, bajo el límite",
    "overflow": "uno no lee, sobre el límite",
}


def format_number(value: float, decimals: int = 0) -> str:
    """Igual que ``chatlib.lab.figures.format_number`` (4096, 32 000, 0,25)."""
    from chatlib.lab.figures import format_number as fmt

    return fmt(value, decimals)


@dataclass(frozen=True)
class Row:
    """Una fila de la tabla: un escenario, un parámetro y una métrica, para ambos servidores."""

    scenario: str
    param: str
    metric: str
    label: str
    unit: str
    decimals: int
    higher_is_better: bool
    values: dict[str, list[float]]

    def median(self, server: str) -> float:
        return statistics.median(self.values[server])

    def span(self, server: str) -> tuple[float, float]:
        return min(self.values[server]), max(self.values[server])

    @property
    def ratio(self) -> float:
        """Mediana con hilos / mediana asyncio."""
        b = self.median("asyncio")
        return self.median("threaded") / b if b else float("nan")

    @property
    def within_noise(self) -> bool:
        (a0, a1), (b0, b1) = self.span("threaded"), self.span("asyncio")
        return a0 <= b1 and b0 <= a1

    @property
    def verdict(self) -> str:
        """«hilos», «asyncio» o «dentro del ruido»: quién es mejor en esta fila."""
        if self.within_noise:
            return "dentro del ruido"
        threaded_better = (self.ratio > 1) == self.higher_is_better
        return "hilos" if threaded_better else "asyncio"


def load(path: Path = RESULTS) -> dict[tuple[str, str, str, str], list[float]]:
    """Valores numéricos de ``results.csv`` por (escenario, parámetro, servidor, métrica)."""
    samples: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    with path.open(encoding="utf-8") as fh:
        for record in csv.DictReader(fh):
            try:
                value = float(record["value"])
            except ValueError:
                continue
            samples[(record["scenario"], record["param"], record["server"], record["metric"])].append(value)
    return samples


def _param_key(param: str) -> tuple[int, float | str]:
    try:
        return (0, float(param))
    except ValueError:
        return (1, list(STALL_VARIANTS).index(param) if param in STALL_VARIANTS else param)


def rows(samples: dict[tuple[str, str, str, str], list[float]]) -> list[Row]:
    """Todas las filas de la corrida (cada parámetro medido de cada métrica conocida)."""
    params: dict[str, set[str]] = defaultdict(set)
    for scenario, param, _server, _metric in samples:
        params[scenario].add(param)
    out = []
    for (scenario, metric), (label, unit, decimals, higher) in METRICS.items():
        for param in sorted(params.get(scenario, ()), key=_param_key):
            values = {server: samples.get((scenario, param, server, metric), []) for server in SERVERS}
            if all(values.values()):
                out.append(Row(scenario, param, metric, label, unit, decimals, higher, values))
    return out


def param_text(row: Row) -> str:
    """El parámetro en palabras: «N = 100», «2000 clientes», «todos leen»…"""
    if row.scenario in ("fanout", "latency", "memory"):
        return f"N = {format_number(float(row.param))}"
    if row.scenario in ("joins", "fairness"):
        return f"{format_number(float(row.param))} clientes"
    if row.scenario in ("transfers", "transfers_ok"):
        return f"{format_number(float(row.param))} :t"
    return STALL_VARIANTS.get(row.param, row.param)


def memory_floor(samples: dict[tuple[str, str, str, str], list[float]]) -> list[tuple[str, float, float]]:
    """(N, KiB por cliente con hilos, KiB del piso) para cada N del escenario ``memory`` que tenga piso."""
    out = []
    params = {p for (s, p, server, m) in samples if s == "memory" and server == FLOOR}
    for param in sorted(params, key=_param_key):
        threaded = samples.get(("memory", param, "threaded", "rss_per_client_kib"))
        floor = samples.get(("memory", param, FLOOR, "rss_per_client_kib"))
        if threaded and floor:
            out.append((param, statistics.median(threaded), statistics.median(floor)))
    return out


def joins_ceilings(
    samples: dict[tuple[str, str, str, str], list[float]],
) -> list[tuple[str, dict[str, float]]]:
    """(clientes, mediana de altas/s por servidor) para cada ``joins`` medido con ambos techos."""
    out = []
    params = {p for (s, p, server, m) in samples if s == "joins" and server in CEILINGS}
    for param in sorted(params, key=_param_key):
        medians = {
            server: statistics.median(values)
            for server in (*SERVERS, *CEILINGS)
            if (values := samples.get(("joins", param, server, "joins_per_s")))
        }
        if len(medians) == len(SERVERS) + len(CEILINGS):
            out.append((param, medians))
    return out


def relay_ceiling(
    samples: dict[tuple[str, str, str, str], list[float]],
) -> tuple[str, dict[tuple[str, str], float]] | None:
    """El techo ``floor+relay`` con el mayor N que lo midió en difusión y en latencia.

    Devuelve ``(N, medianas)``, con ``medianas[(servidor, métrica)]`` para
    ``deliveries_per_s`` y ``p99_ms`` de los dos servidores y del techo;
    ``None`` si la corrida no lo midió (las publicadas antes de ``--relay``).
    """
    params = {
        p
        for (s, p, server, m) in samples
        if s == "fanout" and server == RELAY and ("latency", p, RELAY, "p99_ms") in samples
    }
    for param in sorted(params, key=_param_key, reverse=True):
        medians = {
            (server, metric): statistics.median(values)
            for server in (*SERVERS, RELAY)
            for scenario, metric in (("fanout", "deliveries_per_s"), ("latency", "p99_ms"))
            if (values := samples.get((scenario, param, server, metric)))
        }
        if len(medians) == 2 * (len(SERVERS) + 1):
            return param, medians
    return None


def table_rows(all_rows: list[Row]) -> list[list[str]]:
    """Celdas para ``informe_lib.table``: medición, parámetro, hilos, asyncio, razón, mejor."""
    cells = []
    for row in all_rows:
        cells.append(
            [
                f"{row.label} [{row.unit}]",
                param_text(row),
                format_number(row.median("threaded"), row.decimals),
                format_number(row.median("asyncio"), row.decimals),
                format_number(row.ratio, 2),
                row.verdict,
            ]
        )
    return cells


def transfer_rejections(samples: dict[tuple[str, str, str, str], list[float]]) -> float | None:
    """Fracción de los :t rechazados por fondos en el escenario de transferencias (servidor con hilos)."""
    for (scenario, param, server, metric), values in samples.items():
        if scenario == "transfers" and server == "threaded" and metric == "insufficient":
            total = samples.get((scenario, param, server, "transfers"))
            if total:
                return statistics.median(values) / statistics.median(total)
    return None


def repetitions(samples: dict[tuple[str, str, str, str], list[float]]) -> int:
    """Repeticiones por servidor y punto (la menor de la corrida)."""
    counts = [len(v) for v in samples.values()]
    return min(counts) if counts else 0


def plot(all_rows: list[Row]):
    """Figura de dos paneles: entregas/s y latencia p99 según N, mediana y banda mínimo–máximo."""
    from chatlib.lab.figures import decimal_comma, new_figure

    fig, (left, right) = new_figure(1.0, 2.5, ncols=2)
    styles = {"threaded": ("#1F3A68", "o", "hilos (chatlib.server)"), "asyncio": ("#D98C00", "s", "asyncio")}
    for ax, metric, scale, ylabel in (
        (left, "deliveries_per_s", 1e6, "millones de entregas/s"),
        (right, "p99_ms", 1.0, "latencia p99 [ms]"),
    ):
        chosen = [r for r in all_rows if r.metric == metric and r.scenario in ("fanout", "latency")]
        chosen.sort(key=lambda r: float(r.param))
        xs = [float(r.param) for r in chosen]
        for server, (color, marker, label) in styles.items():
            med = [r.median(server) / scale for r in chosen]
            lo = [r.span(server)[0] / scale for r in chosen]
            hi = [r.span(server)[1] / scale for r in chosen]
            ax.fill_between(xs, lo, hi, color=color, alpha=0.18, linewidth=0)
            ax.plot(xs, med, color=color, marker=marker, label=label)
        ax.set_xscale("log")
        ax.set_xticks(xs, [format_number(x) for x in xs])
        ax.minorticks_off()
        ax.set_xlabel("receptores N")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        decimal_comma(ax, "y")
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, frameon=False)
    return fig
