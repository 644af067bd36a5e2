"""Prueba de humo del benchmark: solo corrección, sin medir tiempos.

Arranca los servidores como procesos (igual que ``bench/run.py``), repite una
conversación corta contra la referencia asyncio y ejecuta cada escenario del
generador de carga en tamaño mínimo, verificando que todo mensaje llegó.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import driver, servers  # noqa: E402
from chatlib import protocol as proto  # noqa: E402

KINDS = ["asyncio"] + (["threaded"] if servers.threaded_available() else [])


@pytest.fixture(scope="module", params=KINDS)
def server(request: pytest.FixtureRequest) -> Iterator[servers.ServerProcess]:
    with servers.ServerProcess(request.param, max_clients=64) as proc:
        yield proc


@pytest.fixture(scope="module")
def async_server() -> Iterator[servers.ServerProcess]:
    with servers.ServerProcess("asyncio", max_clients=8) as proc:
        yield proc


class LineClient:
    """Cliente bloqueante mínimo: envía líneas y espera líneas exactas (con timeout)."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=5)
        self.file = self.sock.makefile("r", encoding="utf-8", newline="\n")

    def send(self, line: str) -> None:
        self.sock.sendall((line + "\n").encode())

    def expect(self, line: str) -> None:
        assert self.file.readline().rstrip("\n") == line

    def join(self, name: str, balance: int) -> None:
        self.expect("Welcome to the best chat in the universe!")
        self.expect("[SERVER] Client: What is your identifier?")
        self.send(name)
        self.expect("[SERVER] Client: What is your balance?")
        self.send(str(balance))
        self.expect(f"[SERVER] Client: The balance of {balance} has been set to your account.")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_async_reference_transcript(async_server: servers.ServerProcess) -> None:
    alice, bob = LineClient(async_server.address), LineClient(async_server.address)
    try:
        alice.join("alice", 10)
        bob.join("bob", 50)
        alice.expect("[SERVER] Client: bob connected!")
        bob.send("hola :smile")
        alice.expect("bob: hola :~)")
        bob.send(":funds")  # si el chat le llegara de vuelta a bob, esta línea no sería la primera
        bob.expect("[SERVER] Client: You have 50 dollars.")
        bob.send(":t - alice - 20")
        bob.expect("[SERVER] Client: You transferred 20 dollars to alice. You have 30 dollars.")
        alice.expect("[SERVER] Client: bob transferred you 20 dollars.")
        bob.send(":t - alice - 31")
        bob.expect("[SERVER] Client: You don't have sufficient funds for the transaction.")
        bob.send(":q")
        bob.expect("You have been disconnected from the best chat in the universe!")
        assert bob.file.readline() == ""
        alice.expect("[SERVER] Client: bob disconnected!")
        alice.send(":funds")
        alice.expect("[SERVER] Client: You have 30 dollars.")
    finally:
        alice.close()
        bob.close()


def test_fanout_throughput_delivers_everything(server: servers.ServerProcess) -> None:
    result = driver.fanout_throughput(server.address, 3, 200, timeout=10)
    assert result.delivery.ok, result


def test_fanout_latency_delivers_everything(server: servers.ServerProcess) -> None:
    result = driver.fanout_latency(server.address, 3, 5, rate_hz=50, timeout=5)
    assert result.delivery.ok, result
    assert result.samples == 15


def test_joins_leave_nothing_behind(server: servers.ServerProcess) -> None:
    result = driver.joins(server.address, 20, concurrency=4, timeout=10)
    assert (result.joins, result.failures) == (20, 0)


def test_transfers_conserve_money(server: servers.ServerProcess) -> None:
    result = driver.transfers(server.address, 4, 20, timeout=10)
    assert result.ok, result
    assert result.succeeded + result.insufficient == 80


def test_transfers_in_rounds_answer_every_round_and_conserve_money(server: servers.ServerProcess) -> None:
    """``rounds=3``: la misma ráfaga tres veces, cada una tras todas las respuestas de la anterior."""
    result = driver.transfers(server.address, 4, 20, timeout=10, rounds=3)
    assert result.ok, result
    assert (result.transfers, result.succeeded + result.insufficient) == (240, 240)
    assert result.funds_before == result.funds_after == 4 * 1000


def test_stalled_reader_scenario_runs(server: servers.ServerProcess) -> None:
    result = driver.stalled_reader(
        server.address, 5, stalled=True, burst_bytes=100_000, messages=4, rate_hz=50
    )
    assert result.latency.delivery.ok and result.burst_delivery.ok, result


@pytest.mark.parametrize("kind", ["floor+notices", "floor+portable"])
def test_the_joins_ceiling_tells_the_others_who_joined_and_who_left(kind: str) -> None:
    """``floor_server.py --notices [--portable]``: los techos de la fila de altas cumplen el requisito 4."""
    with servers.ServerProcess(kind, max_clients=8) as proc:
        ana, beto = LineClient(proc.address), LineClient(proc.address)
        try:
            ana.join("ana", 5)
            beto.join("beto", 7)
            ana.expect(proto.connected_line("beto"))
            beto.send(":q")
            beto.expect(proto.GOODBYE)
            ana.expect(proto.disconnected_line("beto"))
        finally:
            ana.close()
            beto.close()


def test_the_relay_ceiling_relays_every_line_of_a_burst_and_the_goodbye() -> None:
    """``floor_server.py --notices --relay``: el techo de difusión reenvía el chat, línea por línea exacta."""
    with servers.ServerProcess("floor+relay", max_clients=8) as proc:
        ana, beto = LineClient(proc.address), LineClient(proc.address)
        try:
            ana.join("ana", 5)
            beto.join("beto", 7)
            ana.expect(proto.connected_line("beto"))
            beto.send("hola")
            ana.expect("beto: hola")
            # Muchas líneas en un solo envío: llegan en varios ``recv`` y se reenvían por bloques.
            burst = [f"line {i} " + "x" * (i % 90) for i in range(3000)]
            beto.sock.sendall(("\n".join(burst) + "\n:q\n").encode())
            for line in burst:
                ana.expect(f"beto: {line}")
            beto.expect(proto.GOODBYE)
            ana.expect(proto.disconnected_line("beto"))
        finally:
            ana.close()
            beto.close()


def test_the_relay_ceiling_runs_the_fanout_and_latency_scenarios() -> None:
    with servers.ServerProcess("floor+relay", max_clients=16) as proc:
        flood = driver.fanout_throughput(proc.address, 3, 200, timeout=10)
        assert flood.delivery.ok, flood
        paced = driver.fanout_latency(proc.address, 3, 5, rate_hz=50, timeout=5)
        assert paced.delivery.ok and paced.samples == 15, paced


def test_the_memory_floor_joins_and_says_goodbye() -> None:
    """``floor_server.py`` sin opciones: el saludo mínimo, un hilo quieto y la despedida a ``:q``."""
    with servers.ServerProcess("floor", max_clients=8) as proc:
        ana = LineClient(proc.address)
        try:
            ana.join("ana", 5)
            ana.send(":q")
            ana.expect(proto.GOODBYE)
            assert ana.file.readline() == ""
        finally:
            ana.close()


@pytest.mark.parametrize(
    ("kind", "marker"), [("chatlib", "ChatServer.release (server.py)"), ("floor", "_serve (floor_server.py)")]
)
def test_join_bytecodes_counts_every_thread_of_the_server(kind: str, marker: str) -> None:
    """``bench/join_bytecodes.py``: todas las altas terminan y se cuentan también los hilos de sesión."""
    script = Path(__file__).resolve().parents[1] / "bench" / "join_bytecodes.py"
    out = subprocess.run(
        [sys.executable, str(script), "--server", kind, "--joins", "40", "--top", "100000"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    lines = out.splitlines()
    head = re.fullmatch(rf"{kind}: ([\d,]+) bytecodes per join \(40 joins, 32 in flight\)", lines[0])
    assert head is not None, out
    per_join = int(head.group(1).replace(",", ""))
    rows = [re.fullmatch(r" *([\d.]+)  (.+)", line) for line in lines[2:]]
    assert all(rows), out
    # Con todas las filas el total es su suma (cada una redondeada a 0,1); el hilo de cada sesión está.
    assert abs(sum(float(row.group(1)) for row in rows if row) - per_join) <= 1 + 0.05 * len(rows)
    assert marker in {row.group(2) for row in rows if row}


def test_the_joins_model_adds_python_to_the_ceiling() -> None:
    """``bench/joins_model.py``: ``--spin`` agrega CPU de usuario al techo; todas las altas terminan."""
    script = Path(__file__).resolve().parents[1] / "bench" / "joins_model.py"
    out = subprocess.run(
        [
            sys.executable,
            str(script),
            "--joins",
            "40",
            "--rounds",
            "1",
            "--warm-up",
            "10",
            "--spins",
            "0,300000",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    ).stdout
    rows = {}
    for line in out.splitlines():
        row = re.fullmatch(r"\| ([a-z+ \-\d]+) \| ([\d,]+) \| (\d+) \| (\d+) \|", line)
        if row:
            rows[row.group(1)] = int(row.group(3))
    spun = "floor+portable --spin 300000"
    assert set(rows) == {"threaded", "asyncio", "floor+portable --spin 0", spun}, out
    # 300.000 vueltas son varios milisegundos de Python por alta: muy por encima de la resolución del reloj.
    assert rows[spun] > rows["floor+portable --spin 0"] + 1000, out
    assert "each µs of user CPU per join adds" in out and "(2 points)" in out


@pytest.mark.parametrize("scenario", ["latency", "fanout"])
def test_plots_are_drawn_for_the_scenarios_that_ran(scenario: str, tmp_path: Path) -> None:
    """Antes: ``run.py --only latency`` fallaba al final, graficando un throughput sin datos en escala log."""
    from bench import run

    rec = run.Recorder()
    metrics = ("p50_ms", "p99_ms") if scenario == "latency" else ("deliveries_per_s",)
    for kind in (run.A, run.B):
        for n in run.QUICK.ns:
            rec.add(scenario, str(n), kind, 1, **{metric: float(n) for metric in metrics})
    run.plot(rec, run.QUICK, [run.A, run.B], tmp_path)
    drawn = {"latency": "latency.png", "fanout": "throughput.png"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [drawn[scenario]]
