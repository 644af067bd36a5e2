"""Pruebas del laboratorio: las demostraciones son deterministas en cada ejecución."""

from __future__ import annotations

import threading

import pytest
from chatlib import protocol as proto
from chatlib.bank import Bank
from chatlib.client import ChatClient
from chatlib.lab.racelab import (
    DEADLOCK_SCENARIO,
    LOST_UPDATE_SCENARIO,
    Scenario,
    deadlock_demo,
    describe,
    lost_update_demo,
    measure_bank_throughput,
    run_experiment,
    run_interleaving,
    run_socket_demo,
    run_trial,
    summarize,
    throughput_findings,
)
from chatlib.lab.strategies import STRATEGIES, UnsafeBank, make_bank
from chatlib.server import ChatServer

LOCKED = ["coarse", "naive", "ordered"]


@pytest.mark.parametrize("run", range(5))
def test_unsafe_bank_loses_an_update_and_goes_negative_every_run(run: int) -> None:
    result = lost_update_demo("unsafe")
    assert result.final == {"A": -50, "B": 70}
    assert result.negative_accounts == {"A": -50}
    assert result.money_error == -80
    assert not result.conserved
    assert [(o.returned, o.error) for o in result.outcomes] == [(20, None), (-50, None)]
    lost = result.lost_updates
    assert [(e.thread, e.account, e.value) for e in lost] == [("T2", "B", 70)]
    assert [(e.thread, describe(e)) for e in result.events] == [
        ("T1", "inicio"),
        ("T2", "inicio"),
        ("T1", "verifica A=100"),
        ("T2", "verifica A=100"),
        ("T1", "lee A=100"),
        ("T1", "escribe A=20"),
        ("T2", "lee A=20"),
        ("T2", "escribe A=-50"),
        ("T1", "lee B=0"),
        ("T2", "lee B=0"),
        ("T1", "escribe B=80"),
        ("T2", "escribe B=70"),
        ("T1", "termina"),
        ("T2", "termina"),
    ]


@pytest.mark.parametrize("run", range(3))
@pytest.mark.parametrize("strategy", LOCKED)
def test_locked_banks_survive_the_same_script(strategy: str, run: int) -> None:
    result = lost_update_demo(strategy)
    assert result.conserved
    assert result.final == {"A": 20, "B": 80}
    assert result.lost_updates == []
    assert [(o.returned, o.error) for o in result.outcomes] == [
        (20, None),
        (None, "InsufficientFunds"),
    ]
    waits = [e for e in result.events if e.step == "wait" and e.thread == "T2"]
    assert waits, "T2 must have asked for a lock"


def test_events_are_timestamped_in_order() -> None:
    for strategy in STRATEGIES:
        events = lost_update_demo(strategy).events
        times = [e.time for e in events]
        assert times == sorted(times)
        assert times[0] >= 0
        assert {e.thread for e in events} == {"T1", "T2"}


@pytest.mark.parametrize("run", range(3))
def test_naive_bank_deadlock_is_reported_every_run(run: int) -> None:
    result = deadlock_demo("naive")
    assert result.deadlocks == 1
    assert [(o.thread, o.error) for o in result.outcomes] == [
        ("T1", "DeadlockDetected"),
        ("T2", None),
    ]
    assert result.final == {"A": 120, "B": 80}
    assert result.conserved
    steps = [(e.thread, e.step, e.account) for e in result.events]
    assert steps[:8] == [
        ("T1", "start", ""),
        ("T2", "start", ""),
        ("T1", "wait", "A"),
        ("T2", "wait", "B"),
        ("T1", "lock", "A"),
        ("T2", "lock", "B"),
        ("T1", "wait", "B"),
        ("T2", "wait", "A"),
    ]
    assert ("T1", "timeout", "B") in steps


@pytest.mark.parametrize("strategy", ["ordered", "coarse"])
def test_ordered_and_coarse_banks_complete_the_deadlock_script(strategy: str) -> None:
    result = deadlock_demo(strategy)
    assert result.deadlocks == 0
    assert [o.error for o in result.outcomes] == [None, None]
    assert result.final == {"A": 110, "B": 90}
    assert not any(e.step == "timeout" for e in result.events)


def test_custom_scenario_three_threads() -> None:
    scenario = Scenario(
        initial={"A": 30, "B": 0},
        transfers={"T1": ("A", "B", 10), "T2": ("A", "B", 10), "T3": ("A", "B", 10)},
        schedule=("T1", "T2", "T3") * 6,
    )
    unsafe = run_interleaving("unsafe", scenario)
    assert unsafe.lost_updates
    assert unsafe.final != {"A": 0, "B": 30}
    for strategy in LOCKED:
        result = run_interleaving(strategy, scenario)
        assert result.final == {"A": 0, "B": 30}


def test_scenarios_are_plain_data() -> None:
    assert set(LOST_UPDATE_SCENARIO.transfers) == set(DEADLOCK_SCENARIO.transfers) == {"T1", "T2"}


@pytest.mark.parametrize("strategy", LOCKED)
def test_trials_of_safe_strategies_conserve_money(strategy: str) -> None:
    for threads in (1, 4, 8):
        timeout = 0.05 if strategy == "naive" else 10.0
        result = run_trial(strategy, threads, transfers_per_thread=400, lock_timeout=timeout)
        assert result.money_error == 0
        assert result.final_total == result.expected_total
        assert result.negative_accounts == 0
        assert result.min_balance >= 0
        assert result.lost_updates == 0
        assert result.applied + result.rejected + result.deadlocks == result.transfers
        assert result.transfers_per_second > 0
        if strategy != "naive":
            assert result.deadlocks == 0


def test_single_thread_trials_are_identical_across_strategies() -> None:
    """Con un hilo no hay carrera: mismo plan, mismo resultado en las cuatro estrategias."""
    results = [run_trial(s, 1, transfers_per_thread=300, seed=7) for s in STRATEGIES]
    assert len({(r.applied, r.rejected, r.final_total) for r in results}) == 1
    assert all(r.money_error == 0 for r in results)


def test_unsafe_trial_with_window_breaks_the_books() -> None:
    result = run_trial("unsafe", 4, transfers_per_thread=40, window=0.001)
    assert result.lost_updates > 0
    assert result.window == 0.001


def test_run_experiment_grid_and_summary() -> None:
    seen: list[str] = []
    results = run_experiment(
        ["coarse", "ordered"],
        (1, 2),
        trials=2,
        transfers_per_thread=50,
        progress=lambda r: seen.append(r.strategy),
    )
    assert len(results) == len(seen) == 8
    assert {(r.strategy, r.threads, r.trial) for r in results} == {
        (s, t, k) for s in ("coarse", "ordered") for t in (1, 2) for k in (0, 1)
    }
    summary = summarize(results)
    assert set(summary) == {("coarse", 1), ("coarse", 2), ("ordered", 1), ("ordered", 2)}
    assert all(row["broken_trials"] == 0 for row in summary.values())
    assert results[0].as_dict()["strategy"] == "coarse"


def two_credits_to_hub(bank: Bank) -> int:
    """``x`` y ``y`` le transfieren a ``hub`` a la vez por sockets; retorna el ``:funds`` de hub."""
    with ChatServer("127.0.0.1", 0, bank=bank, console=None) as server:
        clients = [
            ChatClient.join(server.address, name, funds) for name, funds in (("hub", 0), ("x", 10), ("y", 10))
        ]
        hub, x, y = clients
        try:
            x.send(":t - hub - 5")
            y.send(":t - hub - 7")
            x.expect(proto.transfer_sent_line(5, "hub", 5))
            y.expect(proto.transfer_sent_line(7, "hub", 3))
            hub.expect_all([proto.transfer_received_line("x", 5), proto.transfer_received_line("y", 7)])
            hub.send(":funds")
            funds = proto.parse_funds_line(hub.expect(lambda line: proto.parse_funds_line(line) is not None))
            assert funds is not None
            return funds
        finally:
            for client in clients:
                client.close()


def test_socket_unsafe_bank_loses_a_credit_under_a_forced_interleaving() -> None:
    """Los dos hilos del servidor leen el saldo de hub antes de que cualquiera lo escriba."""
    both_read = threading.Barrier(2)
    pending = [2]
    guard = threading.Lock()

    def hook(thread: str, step: str, account: str, value: int) -> None:
        if step == "read" and account == "hub":
            with guard:
                armed = pending[0] > 0
                pending[0] -= 1
            if armed:
                both_read.wait(10)

    bank = UnsafeBank(step_hook=hook)
    hub_funds = two_credits_to_hub(bank)
    assert hub_funds in (5, 7), "hub was told about 12 dollars but holds only one of the credits"
    assert bank.stale_writes == 1


@pytest.mark.parametrize("strategy", LOCKED)
def test_socket_locked_banks_keep_both_credits(strategy: str) -> None:
    assert two_credits_to_hub(make_bank(strategy)) == 12


def test_socket_default_server_conserves_money_under_load() -> None:
    result = run_socket_demo(clients=8, transfers_per_client=25)
    assert result.confirmed == 200
    assert result.money_error == 0
    assert result.bank_total == result.reported_total == 8_000


def test_socket_unsafe_server_breaks_conservation() -> None:
    result = run_socket_demo(UnsafeBank(window=0.005), clients=6, transfers_per_client=8)
    assert result.confirmed == 48
    assert result.lost_updates > 0
    assert result.bank_total == result.reported_total


def test_throughput_measurement_gives_median_and_range_per_point() -> None:
    points = measure_bank_throughput(
        ("bank-nolock", "coarse"), (1, 2), operations=2_000, repeats=3, warmup=200
    )
    assert [(p.strategy, p.threads) for p in points] == [
        ("bank-nolock", 1),
        ("coarse", 1),
        ("bank-nolock", 2),
        ("coarse", 2),
    ]
    for point in points:
        assert len(point.samples) == 3
        assert point.operations >= 2_000
        assert 0 < point.minimum <= point.median <= point.maximum
    findings = throughput_findings(points)
    assert any("Costo del lock" in line for line in findings)
    assert all("razón de medianas" in line or "Escalamiento" in line for line in findings)


def test_bank_without_lock_runs_the_same_code_as_bank() -> None:
    """La referencia sin lock es ``Bank`` con un lock nulo: con un hilo se comporta igual que ``Bank``."""
    import random

    from chatlib.bank import InsufficientFunds
    from chatlib.lab.racelab import _BankWithoutLock

    outcomes = []
    for bank in (Bank(), _BankWithoutLock()):
        for name in ("a", "b", "c"):
            bank.open(name, 100)
        rng = random.Random(5)
        trace = []
        for _ in range(300):
            source, target = rng.sample(["a", "b", "c"], 2)
            try:
                trace.append(bank.transfer(source, target, rng.randint(1, 80)))
            except InsufficientFunds:
                trace.append(None)
        outcomes.append((trace, bank.accounts()))
    assert outcomes[0] == outcomes[1]
    assert None in outcomes[0][0], "the plan must also exercise rejected transfers"
