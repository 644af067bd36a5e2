"""Una sesión de chat guionada y reproducible, para el cuaderno en vivo y el informe.

``run_demo()`` levanta un ``ChatServer`` real en un puerto libre, conecta seis
clientes en el mismo proceso y recorre todos los requisitos del enunciado:
saludo y pregunta de saldo, avisos de conexión y desconexión, mensajes
públicos, un mensaje privado, ``:u``, los tres emojis, ``:funds``, una
transferencia aceptada y otra rechazada por falta de fondos, ``:q`` y una
desconexión abrupta. Cada paso espera a que todos los destinatarios reciban
su línea antes de seguir, así el resultado es el mismo en cada ejecución.

También hay mediciones pequeñas (latencia y rendimiento en el mismo proceso)
y figuras de matplotlib (terminales lado a lado y flujo de mensajes). El
módulo no importa matplotlib hasta que se pide una figura.
"""

from __future__ import annotations

import contextlib
import html
import logging
import statistics
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chatlib import protocol as proto
from chatlib.bank import JournalEntry
from chatlib.client import ChatClient
from chatlib.server import SHUTDOWN_NOTICE, ChatServer

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "DEMO_USERS",
    "DemoResult",
    "ErrorCasesResult",
    "Step",
    "measure_latency",
    "measure_throughput",
    "plot_flow",
    "plot_terminals",
    "run_demo",
    "run_error_cases",
    "transcripts_html",
]

# (identificador, saldo inicial). fran parte con 3000 como en el ejemplo del enunciado.
DEMO_USERS: tuple[tuple[str, int], ...] = (
    ("ana", 50000),
    ("beto", 20000),
    ("carla", 15000),
    ("diego", 8000),
    ("elena", 12000),
    ("fran", 3000),
)


@dataclass
class Step:
    """Un paso del guion: quién actúa, qué escribe y qué requisito ilustra."""

    actor: str
    text: str
    requirement: str
    start: float = 0.0
    end: float = 0.0


@dataclass
class DemoResult:
    """Todo lo que produjo la sesión, ya terminada (servidor detenido)."""

    transcripts: dict[str, list[str]]
    console: list[str]
    steps: list[Step]
    events: dict[str, list[tuple[float, str, str]]]
    balances_initial: dict[str, int]
    journal: list[JournalEntry] = field(default_factory=list)
    t0: float = 0.0
    duration: float = 0.0
    address: tuple[str, int] = ("127.0.0.1", 0)


def _expect_all(clients: dict[str, ChatClient], names: Iterable[str], line: str, timeout: float) -> None:
    for name in names:
        clients[name].expect(line, timeout)


def run_demo(
    timeout: float = 5.0, users: tuple[tuple[str, int], ...] = DEMO_USERS, pause: float = 0.0
) -> DemoResult:
    """Ejecuta la sesión guionada completa y devuelve lo que vio cada participante.

    ``pause`` (segundos) separa los pasos solo para que el diagrama de flujo
    se lea mejor; el resultado es el mismo con o sin pausa.
    """
    names = [name for name, _ in users]
    balances = dict(users)
    clients: dict[str, ChatClient] = {}
    steps: list[Step] = []
    server = ChatServer("127.0.0.1", 0, console=None)
    t0 = time.monotonic()
    server.start()
    online: list[str] = []

    def step(actor: str, text: str, requirement: str, *actions: Callable[[], object]) -> None:
        if pause:
            time.sleep(pause)
        record = Step(actor, text, requirement, start=time.monotonic())
        for action in actions:
            action()
        record.end = time.monotonic()
        steps.append(record)

    try:
        # 1. Llegan los seis usuarios: saludo, identificador, saldo y aviso a los demás.
        for name, balance in users:

            def join(name: str = name, balance: int = balance) -> None:
                clients[name] = ChatClient.join(server.address, name, balance, timeout=timeout)
                _expect_all(clients, online, proto.connected_line(name), timeout)

            step(name, f"(se conecta con saldo {balance})", "conexión, identificador y saldo", join)
            online.append(name)

        def say(actor: str, text: str, requirement: str, shown: str | None = None) -> None:
            line = proto.chat_line(actor, shown if shown is not None else text)
            others = [n for n in online if n != actor]
            step(
                actor,
                text,
                requirement,
                lambda: clients[actor].send(text),
                lambda: _expect_all(clients, others, line, timeout),
            )

        def ask(actor: str, text: str, requirement: str, reply: str) -> None:
            step(
                actor,
                text,
                requirement,
                lambda: clients[actor].send(text),
                lambda: clients[actor].expect(reply, timeout),
            )

        # 2. Mensajes públicos, privado, lista de usuarios y emojis.
        say("ana", "Hola a todos! Vendo una bicicleta en 10000 dólares.", "mensaje público")
        say("beto", "Hola ana, ¿está en buen estado?", "mensaje público")
        step(
            "carla",
            ":p - ana - Te la compro si me la guardas hasta mañana",
            "mensaje privado",
            lambda: clients["carla"].send(":p - ana - Te la compro si me la guardas hasta mañana"),
            lambda: clients["ana"].expect(
                proto.private_line("carla", "Te la compro si me la guardas hasta mañana"), timeout
            ),
        )
        ask("diego", ":u", "usuarios conectados", proto.users_line(online))
        for actor, code in (("elena", ":smile"), ("beto", ":angry"), ("carla", ":confused")):
            say(actor, code, f"emoji {code}", shown=proto.EMOJIS[code])

        # 3. El banco: consulta, transferencia rechazada y transferencia aceptada.
        ask("fran", ":funds", "consulta de saldo", proto.funds_line(balances["fran"]))
        ask("fran", ":t - ana - 10000", "transferencia sin fondos", proto.INSUFFICIENT_FUNDS)

        def transfer() -> None:
            clients["ana"].send(":t - fran - 10000")
            clients["ana"].expect(proto.transfer_sent_line(10000, "fran", balances["ana"] - 10000), timeout)
            clients["fran"].expect(proto.transfer_received_line("ana", 10000), timeout)

        step("ana", ":t - fran - 10000", "transferencia aceptada", transfer)
        ask("fran", ":funds", "consulta de saldo", proto.funds_line(balances["fran"] + 10000))
        say(
            "fran",
            "Gracias ana, ya te pagué la bicicleta :smile",
            "mensaje con emoji",
            shown="Gracias ana, ya te pagué la bicicleta :~)",
        )

        # 4. Salidas: una ordenada con :q y una abrupta (socket cerrado sin avisar).
        def quit_beto() -> None:
            clients["beto"].quit(timeout)
            online.remove("beto")
            _expect_all(clients, online, proto.disconnected_line("beto"), timeout)

        step("beto", ":q", "desconexión con :q", quit_beto)

        def crash_diego() -> None:
            clients["diego"].close()
            online.remove("diego")
            _expect_all(clients, online, proto.disconnected_line("diego"), timeout)

        step("diego", "(cierra el socket sin :q)", "desconexión abrupta", crash_diego)
        ask("carla", ":u", "usuarios conectados", proto.users_line(online))
        journal = server.bank.journal()
        address = server.address

        # 5. El servidor se detiene: avisa a quienes siguen conectados y cierra.
        def shutdown() -> None:
            server.stop()
            for name in online:
                clients[name].expect(SHUTDOWN_NOTICE, timeout)
                clients[name].wait_closed(timeout)

        step("servidor", "(se detiene)", "cierre del servidor", shutdown)
    finally:
        for client in clients.values():
            client.close()
        server.stop()
    duration = time.monotonic() - t0
    return DemoResult(
        transcripts={n: list(clients[n].transcript) for n in names},
        console=list(server.console_lines),
        steps=steps,
        events={n: list(clients[n].events) for n in names},
        balances_initial=balances,
        journal=journal,
        t0=t0,
        duration=duration,
        address=address,
    )


@dataclass
class ErrorCasesResult:
    """Lo que vio ``bea`` al equivocarse a propósito, y la consola del servidor."""

    transcript: list[str]
    console: list[str]
    inputs: list[str]


ERROR_CASES: tuple[tuple[str, str], ...] = (
    ("ANA", "identificador ocupado (sin distinguir mayúsculas)"),
    ("bea", "identificador libre"),
    ("mucho", "saldo inválido: se vuelve a preguntar"),
    ("-5", "saldo negativo: se vuelve a preguntar"),
    ("1000", "saldo válido"),
    (":p - nadie - hola", "privado a un usuario que no existe"),
    (":t - nadie - 10", "transferencia a un usuario que no existe"),
    (":t - ana - diez", "monto que no es un número"),
    (":p ana hola", "comando mal formado"),
    (":xyz", "comando desconocido"),
)
"""Entradas erróneas que escribe ``bea`` (y qué caso ilustra cada una)."""


def run_error_cases(timeout: float = 5.0) -> ErrorCasesResult:
    """Sesión real con entradas erróneas: ``ana`` está conectada y ``bea`` se equivoca.

    Cada entrada espera la respuesta completa del servidor antes de la
    siguiente (la pregunta repetida, o la única línea de respuesta a un
    comando), así la transcripción es la misma en cada ejecución.
    """
    server = ChatServer("127.0.0.1", 0, console=None)
    server.start()
    clients: list[ChatClient] = []
    try:
        ana = ChatClient.join(server.address, "ana", 50000, timeout=timeout)
        clients.append(ana)
        bea = ChatClient(server.address, timeout=timeout)
        clients.append(bea)
        bea.expect(proto.ASK_IDENTIFIER, timeout)
        phase = "identifier"
        for text, _case in ERROR_CASES:
            bea.send(text)
            if phase == "identifier":
                reply = bea.expect(lambda line: line in (proto.ASK_IDENTIFIER, proto.ASK_BALANCE), timeout)
                phase = "balance" if reply == proto.ASK_BALANCE else phase
            elif phase == "balance":
                reply = bea.expect(
                    lambda line: line == proto.ASK_BALANCE or proto.is_balance_set_line(line), timeout
                )
                phase = "chat" if reply != proto.ASK_BALANCE else phase
            else:
                bea.expect(lambda line: line.startswith(proto.SERVER_PREFIX), timeout)
        bea.quit(timeout)
        ana.expect(proto.disconnected_line("bea"), timeout)
        transcript = list(bea.transcript)
    finally:
        for client in clients:
            client.close()
        server.stop()
    return ErrorCasesResult(
        transcript=transcript, console=list(server.console_lines), inputs=[text for text, _ in ERROR_CASES]
    )


# --- Mediciones -------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_server_logs() -> Iterator[None]:
    """Durante una medición, los avisos de desconexión masiva no son noticia."""
    logger = logging.getLogger("chatlib")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


@_quiet_server_logs()
def measure_latency(samples: int = 200, listeners: int = 5) -> dict[str, Any]:
    """Latencia de un mensaje público: desde ``send`` hasta que llega a cada oyente.

    Todo ocurre en el mismo proceso y por la interfaz de loopback, así que mide
    el costo del servidor (hilos, encuadre, difusión) y no el de una red real.
    """
    server = ChatServer("127.0.0.1", 0, console=None)
    server.start()
    clients: list[ChatClient] = []
    try:
        sender = ChatClient.join(server.address, "sender", 0)
        clients.append(sender)
        for i in range(listeners):
            c = ChatClient.join(server.address, f"listener{i}", 0)
            clients.append(c)
            sender.expect(proto.connected_line(f"listener{i}"))
        delays: list[float] = []
        for i in range(samples):
            text = f"ping {i}"
            start = time.perf_counter()
            sender.send(text)
            for c in clients[1:]:
                c.expect(proto.chat_line("sender", text))
            delays.append(time.perf_counter() - start)
    finally:
        for c in clients:
            c.close()
        server.stop()
    delays_ms = sorted(d * 1000 for d in delays)
    return {
        "samples": samples,
        "listeners": listeners,
        "median_ms": statistics.median(delays_ms),
        "p95_ms": delays_ms[int(0.95 * (len(delays_ms) - 1))],
        "max_ms": delays_ms[-1],
        "delays_ms": delays_ms,
    }


@_quiet_server_logs()
def measure_throughput(users: int = 10, messages: int = 200) -> dict[str, float]:
    """Cada usuario envía ``messages`` líneas públicas; se mide cuánto tarda en llegar todo.

    Se entregan ``users × messages × (users − 1)`` líneas en total.
    """
    server = ChatServer("127.0.0.1", 0, console=None)
    server.start()
    clients: list[ChatClient] = []
    try:
        join_start = time.perf_counter()
        for i in range(users):
            c = ChatClient.join(server.address, f"u{i}", 0)
            clients.append(c)
        join_ms = (time.perf_counter() - join_start) * 1000 / users
        for c in clients[:-1]:
            c.expect(proto.connected_line(f"u{users - 1}"))
        expected = messages * (users - 1)
        start = time.perf_counter()
        for j in range(messages):
            for c in clients:
                c.send(f"m{j}")
        deadline = time.monotonic() + 60
        for c in clients:
            while sum(1 for line in list(c.lines) if ": m" in line) < expected:
                if time.monotonic() > deadline:
                    raise TimeoutError("throughput run did not finish")
                time.sleep(0.002)
        elapsed = time.perf_counter() - start
    finally:
        for c in clients:
            c.close()
        server.stop()
    delivered = users * expected
    return {
        "users": users,
        "messages": messages,
        "delivered": delivered,
        "seconds": elapsed,
        "lines_per_second": delivered / elapsed,
        "join_ms": join_ms,
    }


# --- Presentación ------------------------------------------------------------------


def transcripts_html(result: DemoResult, names: list[str] | None = None) -> str:
    """Tabla HTML con la terminal de cada usuario lado a lado (para el cuaderno)."""
    names = names or list(result.transcripts)
    head = "".join(f"<th style='text-align:left'>Terminal de {html.escape(n)}</th>" for n in names)
    cells = "".join(
        "<td style='vertical-align:top'><pre style='font-size:11px;white-space:pre-wrap;"
        "background:#1e1e1e;color:#e6e6e6;padding:6px;border-radius:4px'>"
        + html.escape("\n".join(result.transcripts[n]))
        + "</pre></td>"
        for n in names
    )
    return f"<table><tr>{head}</tr><tr>{cells}</tr></table>"


def _line_color(line: str) -> str:
    """Color de texto oscuro (se imprime sobre fondo claro) según el tipo de línea."""
    if line.startswith("Me: "):
        return "#1E6B34"
    if " (private): " in line:
        return "#7A2A73"
    if "transferred" in line or "dollars" in line or "funds" in line or "balance" in line:
        return "#8A5200"
    if line.startswith(proto.SERVER_PREFIX) or line in (proto.WELCOME, proto.GOODBYE):
        return "#1F3A68"
    return "#111111"


def plot_terminals(
    result: DemoResult,
    names: list[str] | None = None,
    *,
    columns: int = 2,
    width: float | None = None,
    fontsize: float = 8.0,
) -> Figure:
    """Figura con una «terminal» por usuario: exactamente lo que vio cada uno.

    Texto oscuro sobre fondo claro (se imprime bien), al ancho de texto del
    informe por omisión y con letra de al menos 8 pt (``chatlib.lab.figures``).
    """
    import matplotlib.pyplot as plt

    from chatlib.lab import figures

    figures.style()
    width = width or figures.TEXT_WIDTH_IN
    names = names or list(result.transcripts)
    rows = -(-len(names) // columns)
    wspace = 0.03
    panel_in = width * 0.98 / (columns + wspace * (columns - 1))
    wrap = int(panel_in * 72 / (fontsize * 0.602)) - 3  # DejaVu Sans Mono: 0,602 em por carácter
    wrapped: dict[str, list[tuple[str, str]]] = {}
    for n in names:
        out: list[tuple[str, str]] = []
        for line in result.transcripts[n]:
            pieces = textwrap.wrap(line, wrap, subsequent_indent="  ", break_long_words=True) or [""]
            out.extend((p, _line_color(line)) for p in pieces)
        wrapped[n] = out
    per_row = [max(len(wrapped[n]) for n in names[r * columns : (r + 1) * columns]) for r in range(rows)]
    line_h = fontsize * 1.45 / 72  # pulgadas
    heights = [h * line_h + 0.45 for h in per_row]
    fig_h = sum(heights) + 0.1 * rows + 0.25
    fig = plt.figure(figsize=(width, fig_h))
    grid = fig.add_gridspec(
        rows,
        columns,
        height_ratios=heights,
        hspace=0.12,
        wspace=wspace,
        left=0.01,
        right=0.99,
        top=1 - 0.28 / fig_h,
        bottom=0.01,
    )
    for k, n in enumerate(names):
        ax = fig.add_subplot(grid[k // columns, k % columns])
        ax.set_facecolor("#F7F8FA")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(True)
            spine.set_color("#C9CED6")
        ax.set_title(
            f"Terminal de {n}",
            fontsize=fontsize + 1.5,
            loc="left",
            family="DejaVu Sans",
            color="#1f3a68",
            fontweight="bold",
            pad=3,
        )
        total = per_row[k // columns]
        for i, (text, color) in enumerate(wrapped[n]):
            ax.text(
                0.015,
                1 - (i + 0.8) / (total + 0.6),
                text,
                family="DejaVu Sans Mono",
                fontsize=fontsize,
                color=color,
                transform=ax.transAxes,
                va="baseline",
            )
    return fig


_KIND_STYLE = {
    "chat": ("#1f77b4", "mensaje público"),
    "private": ("#c2379d", "mensaje privado"),
    "bank": ("#d98c00", "banco"),
    "server": ("#5a6b7d", "aviso del servidor"),
    "command": ("#2a9d4b", "comando del cliente"),
}


def _kind_of(direction: str, line: str) -> str:
    if direction == "out":
        return "command" if line.startswith(":") and line.split()[0] not in proto.EMOJIS else "chat"
    if " (private): " in line:
        return "private"
    if "dollars" in line or "funds" in line:
        return "bank"
    if line.startswith(proto.SERVER_PREFIX) or line in (proto.WELCOME, proto.GOODBYE):
        return "server"
    return "chat"


def _step_label(step: Step) -> str:
    text = step.text
    if text.startswith("(se conecta"):
        return f"{step.actor} entra"
    if text.startswith("(cierra"):
        return f"{step.actor} cae"
    if text.startswith("(se detiene"):
        return "stop()"
    if text.startswith(":"):
        return f"{step.actor} {' '.join(text.split()[:3])}"
    return f"{step.actor}: «{text[:14]}…»" if len(text) > 15 else f"{step.actor}: «{text}»"


def plot_flow(result: DemoResult, width: float | None = None) -> Figure:
    """Diagrama del flujo de mensajes en el tiempo: cada usuario es un carril.

    Un triángulo es una línea enviada por el usuario; un círculo, una línea que
    le llegó del servidor. Cada paso del guion es una franja con su nombre
    arriba; la línea vertical une el envío con todas sus entregas.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from chatlib.lab import figures

    figures.style()
    width = width or figures.TEXT_WIDTH_IN
    names = list(result.transcripts)
    lane = {n: len(names) - i for i, n in enumerate(names)}
    fig, ax = plt.subplots(figsize=(width, 5.2))
    t0 = result.t0

    def ms(t: float) -> float:
        return (t - t0) * 1000

    for n in names:
        ax.axhline(lane[n], color="#d5dae1", lw=0.8, zorder=0)
    for step in result.steps:
        x0 = ms(step.start)
        ins = [
            (t, n) for n in names for t, d, _ in result.events[n] if d == "in" and step.start <= t <= step.end
        ]
        ys = [lane[n] for _, n in ins] + ([lane[step.actor]] if step.actor in lane else [])
        if ys:
            ax.vlines(x0, min(ys), max(ys), color="#b3bcc8", lw=0.6, zorder=1)
        ax.text(
            x0,
            len(names) + 0.55,
            _step_label(step),
            rotation=90,
            fontsize=8,
            ha="center",
            va="bottom",
            color="#33415c",
        )
    for n in names:
        for t, direction, line in result.events[n]:
            kind = _kind_of(direction, line)
            color = _KIND_STYLE[kind][0]
            if direction == "out":
                ax.plot(ms(t), lane[n] + 0.16, "v", color=color, ms=4.5, mec="white", mew=0.3, zorder=4)
            else:
                ax.plot(ms(t), lane[n], "o", color=color, ms=3.3, mec="white", mew=0.3, zorder=3)
    ax.set_yticks([lane[n] for n in names], names)
    ax.set_xlabel("tiempo desde que el servidor empezó a escuchar [ms]")
    ax.set_ylim(0.5, len(names) + 0.5)
    ax.margins(x=0.015)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    handles = [Line2D([], [], marker="s", ls="", color=c, label=label) for c, label in _KIND_STYLE.values()]
    handles += [
        Line2D([], [], marker="v", ls="", color="#444", label="línea enviada"),
        Line2D([], [], marker="o", ls="", color="#444", label="línea recibida"),
    ]
    ax.legend(
        handles=handles, fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False
    )
    fig.tight_layout()
    return fig
