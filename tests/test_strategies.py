"""Pruebas de las estrategias del banco: misma interfaz que ``Bank`` y concurrencia real.

Ninguna prueba usa ``sleep`` para sincronizar: los hilos parten desde una
barrera y se esperan con ``join(timeout)``; los únicos tiempos son límites
generosos de "no se colgó".
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

import pytest
from chatlib.bank import (
    AccountExists,
    Bank,
    BankError,
    InsufficientFunds,
    InvalidAmount,
    SelfTransfer,
    UnknownAccount,
)
from chatlib.lab.strategies import (
    STRATEGIES,
    CoarseLockBank,
    DeadlockDetected,
    NaiveLockBank,
    OrderedLockBank,
    UnsafeBank,
    make_bank,
)
from hypothesis import given, settings
from hypothesis import strategies as st

ALL = sorted(STRATEGIES)
SAFE = ["coarse", "naive", "ordered"]
JOIN_TIMEOUT = 30.0


def run_threads(targets: list[Callable[[], None]]) -> None:
    """Arranca un hilo por función, los larga juntos y verifica que todos terminaron."""
    start = threading.Barrier(len(targets))
    errors: list[BaseException] = []

    def wrap(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                start.wait(JOIN_TIMEOUT)
                target()
            except BaseException as exc:  # se re-lanza en el hilo principal
                errors.append(exc)

        return run

    threads = [threading.Thread(target=wrap(t), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
        assert not thread.is_alive(), "a worker thread hung"
    if errors:
        raise errors[0]


def test_registry_and_factory() -> None:
    assert STRATEGIES == {
        "unsafe": UnsafeBank,
        "coarse": CoarseLockBank,
        "naive": NaiveLockBank,
        "ordered": OrderedLockBank,
    }
    for name, cls in STRATEGIES.items():
        bank = make_bank(name, window=0.0, lock_timeout=1.0)
        assert type(bank) is cls
        assert isinstance(bank, Bank)
    assert make_bank("unsafe", window=0.25).window == 0.25  # type: ignore[attr-defined]
    assert make_bank("ordered", lock_timeout=2.0).lock_timeout == 2.0  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        make_bank("optimistic")
    with pytest.raises(ValueError):
        UnsafeBank(window=-1)
    with pytest.raises(ValueError):
        OrderedLockBank(lock_timeout=0)
    assert issubclass(DeadlockDetected, BankError)


@pytest.mark.parametrize("strategy", ALL)
def test_same_interface_as_bank(strategy: str) -> None:
    bank = make_bank(strategy)
    bank.open("alice", 100)
    bank.open("bob", 5)
    assert bank.transfer("alice", "bob", 30) == 70
    assert bank.balance("alice") == 70
    assert bank.balance("bob") == 35
    assert bank.total() == 105
    assert bank.close("bob") == 35
    assert bank.accounts() == {"alice": 70}
    bank.check_invariant()
    journal = bank.journal()
    assert [e.op for e in journal] == ["open", "open", "transfer", "close"]
    assert (journal[2].account, journal[2].amount, journal[2].counterparty) == ("alice", 30, "bob")


@pytest.mark.parametrize("strategy", ALL)
def test_same_business_errors_and_nothing_changes(strategy: str) -> None:
    bank = make_bank(strategy)
    bank.open("alice", 10)
    bank.open("bob", 0)
    with pytest.raises(InsufficientFunds):
        bank.transfer("alice", "bob", 11)
    with pytest.raises(UnknownAccount):
        bank.transfer("alice", "carol", 1)
    with pytest.raises(UnknownAccount):
        bank.transfer("carol", "alice", 1)
    with pytest.raises(SelfTransfer):
        bank.transfer("alice", "alice", 1)
    for bad in (0, -1, 1.5, True, "3"):
        with pytest.raises(InvalidAmount):
            bank.transfer("alice", "bob", bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidAmount):
        bank.open("dave", -1)
    with pytest.raises(AccountExists):
        bank.open("alice", 1)
    with pytest.raises(UnknownAccount):
        bank.close("carol")
    with pytest.raises(UnknownAccount):
        bank.balance("carol")
    assert bank.accounts() == {"alice": 10, "bob": 0}
    assert len(bank.journal()) == 2
    bank.check_invariant()


@pytest.mark.parametrize("strategy", ALL)
def test_closed_account_can_be_reopened(strategy: str) -> None:
    bank = make_bank(strategy)
    bank.open("alice", 10)
    bank.open("bob", 0)
    assert bank.close("alice") == 10
    with pytest.raises(UnknownAccount):
        bank.transfer("alice", "bob", 1)
    bank.open("alice", 3)
    assert bank.transfer("alice", "bob", 3) == 0
    bank.check_invariant()


@settings(max_examples=40, deadline=None)
@given(
    strategy=st.sampled_from(ALL),
    initial=st.lists(st.integers(min_value=0, max_value=10**6), min_size=2, max_size=5),
    ops=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(-5, 2 * 10**6)), max_size=40),
)
def test_sequential_behaviour_matches_bank(
    strategy: str, initial: list[int], ops: list[tuple[int, int, int]]
) -> None:
    """Sin concurrencia todas las estrategias son indistinguibles del banco de producción."""
    reference, bank = Bank(), make_bank(strategy)
    names = [f"u{i}" for i in range(len(initial))]
    for name, amount in zip(names, initial, strict=False):
        reference.open(name, amount)
        bank.open(name, amount)
    for src, dst, amount in ops:
        args = (names[src % len(names)], names[dst % len(names)], amount)
        try:
            expected: object = reference.transfer(*args)
        except BankError as exc:
            expected = type(exc)
        try:
            got: object = bank.transfer(*args)
        except BankError as exc:
            got = type(exc)
        assert got == expected
    assert bank.accounts() == reference.accounts()
    bank.check_invariant()


@pytest.mark.parametrize("strategy", SAFE)
def test_stress_safe_strategies_conserve_money(strategy: str) -> None:
    # Con 8 hilos el banco ingenuo sí se traba de vez en cuando: un límite corto lo destraba.
    bank = make_bank(strategy, lock_timeout=0.01 if strategy == "naive" else 10.0)
    names = [f"acct{i}" for i in range(8)]
    for name in names:
        bank.open(name, 1_000)
    deadlocks = [0] * 8

    def worker(seed: int) -> Callable[[], None]:
        def run() -> None:
            rng = random.Random(seed)
            for _ in range(1_500):
                src, dst = rng.sample(names, 2)
                try:
                    bank.transfer(src, dst, rng.randint(1, 500))
                except InsufficientFunds:
                    pass
                except DeadlockDetected:
                    deadlocks[seed] += 1

        return run

    run_threads([worker(seed) for seed in range(8)])
    assert bank.total() == 8_000
    assert min(bank.accounts().values()) >= 0
    bank.check_invariant()
    if strategy != "naive":
        assert sum(deadlocks) == 0


def test_ordered_opposite_directions_never_deadlock() -> None:
    """El patrón exacto que traba al banco ingenuo (A→B contra B→A), miles de veces."""
    bank = OrderedLockBank(lock_timeout=10.0)
    bank.open("A", 10_000)
    bank.open("B", 10_000)

    def pump(source: str, target: str) -> Callable[[], None]:
        def run() -> None:
            for _ in range(3_000):
                bank.transfer(source, target, 1)

        return run

    run_threads([pump("A", "B"), pump("B", "A"), pump("A", "B"), pump("B", "A")])
    assert bank.accounts() == {"A": 10_000, "B": 10_000}
    bank.check_invariant()


@pytest.mark.parametrize("strategy", ["coarse", "ordered"])
def test_snapshots_are_consistent_while_transfers_run(strategy: str) -> None:
    """Una foto del banco nunca ve una transferencia a medias, ni siquiera con locks por cuenta."""
    bank = make_bank(strategy, lock_timeout=10.0)
    names = [f"acct{i}" for i in range(6)]
    for name in names:
        bank.open(name, 500)
    done = threading.Event()

    def mover(seed: int) -> Callable[[], None]:
        def run() -> None:
            rng = random.Random(seed)
            try:
                for _ in range(2_000):
                    src, dst = rng.sample(names, 2)
                    try:
                        bank.transfer(src, dst, rng.randint(1, 300))
                    except InsufficientFunds:
                        pass
            finally:
                done.set()

        return run

    def auditor() -> None:
        while not done.is_set():
            bank.check_invariant()
            assert bank.total() == 3_000

    run_threads([mover(1), mover(2), mover(3), auditor])
    bank.check_invariant()


@pytest.mark.parametrize("strategy", SAFE)
def test_close_and_reopen_during_transfers_keeps_the_books(strategy: str) -> None:
    bank = make_bank(strategy, lock_timeout=0.01 if strategy == "naive" else 10.0)
    names = [f"acct{i}" for i in range(5)]
    for name in names:
        bank.open(name, 1_000)

    def mover(seed: int) -> Callable[[], None]:
        def run() -> None:
            rng = random.Random(seed)
            for _ in range(1_500):
                src, dst = rng.sample(names, 2)
                try:
                    bank.transfer(src, dst, rng.randint(1, 300))
                except (InsufficientFunds, UnknownAccount, DeadlockDetected):
                    pass

        return run

    def churn() -> None:
        for _ in range(300):
            try:
                bank.open("acct0", bank.close("acct0"))
            except DeadlockDetected:
                pass

    run_threads([mover(1), mover(2), mover(3), churn])
    bank.check_invariant()
    assert min(bank.accounts().values()) >= 0


def test_naive_deadlock_is_detected_not_hung() -> None:
    """A→B y B→A con su primer lock tomado: el banco ingenuo se rinde y lo reporta."""
    first_locks = threading.Barrier(2)
    taken: set[str] = set()

    def hook(thread: str, step: str, account: str, value: int) -> None:
        if step == "lock" and thread not in taken:
            taken.add(thread)
            first_locks.wait(JOIN_TIMEOUT)

    bank = NaiveLockBank(lock_timeout=0.2, step_hook=hook)
    bank.open("A", 100)
    bank.open("B", 100)
    errors: list[BaseException] = []

    def transfer(source: str, target: str) -> Callable[[], None]:
        def run() -> None:
            try:
                bank.transfer(source, target, 10)
            except DeadlockDetected as exc:
                errors.append(exc)

        return run

    run_threads([transfer("A", "B"), transfer("B", "A")])
    assert errors, "the naive bank should have reported the deadlock"
    assert all(isinstance(e, DeadlockDetected) and e.held for e in errors)
    bank.step_hook = None
    assert bank.total() == 200
    bank.check_invariant()


def test_unsafe_bank_widened_window_loses_updates() -> None:
    """Con la ventana forzada por un hook (sin dormir), dos abonos concurrentes pierden uno."""
    both_read = threading.Barrier(2)

    def hook(thread: str, step: str, account: str, value: int) -> None:
        if step == "read" and account == "hub":
            both_read.wait(JOIN_TIMEOUT)

    bank = UnsafeBank(step_hook=hook)
    bank.open("hub", 0)
    bank.open("x", 10)
    bank.open("y", 10)
    run_threads([lambda: bank.transfer("x", "hub", 5), lambda: bank.transfer("y", "hub", 7)])
    assert bank.balance("hub") in (5, 7)
    assert bank.total() < 20
    assert bank.stale_writes == 1
    with pytest.raises(AssertionError, match="not conserved"):
        bank.check_invariant()
