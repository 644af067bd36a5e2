"""Pruebas del banco: reglas de negocio, invariante contable y concurrencia real."""

from __future__ import annotations

import random
import threading

from chatlib.bank import (
    Bank,
    InsufficientFunds,
    InvalidAmount,
    SelfTransfer,
)
from hypothesis import given, settings
from hypothesis import strategies as st


def test_open_balance_transfer_close() -> None:
    bank = Bank()
    bank.open("alice", 100)
    bank.open("bob", 5)
    assert bank.transfer("alice", "bob", 30) == 70
    assert bank.balance("alice") == 70
    assert bank.balance("bob") == 35
    assert bank.close("bob") == 35
    assert bank.accounts() == {"alice": 70}
    bank.check_invariant()
    assert [e.op for e in bank.journal()] == ["open", "open", "transfer", "close"]


@settings(max_examples=200, deadline=None)
@given(
    initial=st.lists(st.integers(min_value=0, max_value=10**6), min_size=2, max_size=6),
    ops=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(-5, 2 * 10**6)), max_size=60),
)
def test_property_money_is_conserved(initial: list[int], ops: list[tuple[int, int, int]]) -> None:
    bank = Bank()
    names = [f"u{i}" for i in range(len(initial))]
    for name, amount in zip(names, initial, strict=False):
        bank.open(name, amount)
    for src, dst, amount in ops:
        try:
            bank.transfer(names[src % len(names)], names[dst % len(names)], amount)
        except (InsufficientFunds, InvalidAmount, SelfTransfer):
            pass
        assert min(bank.accounts().values()) >= 0
    assert bank.total() == sum(initial)
    bank.check_invariant()


def test_many_threads_conserve_money_exactly() -> None:
    bank = Bank()
    names = [f"acct{i}" for i in range(10)]
    for name in names:
        bank.open(name, 1_000)
    start = threading.Barrier(16)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        for _ in range(2_000):
            src, dst = rng.sample(names, 2)
            try:
                bank.transfer(src, dst, rng.randint(1, 400))
            except InsufficientFunds:
                pass

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive()
    assert bank.total() == 10_000
    assert min(bank.accounts().values()) >= 0
    bank.check_invariant()


def test_journal_is_bounded_but_counters_count_everything() -> None:
    bank = Bank(journal_size=10)
    bank.open("a", 1000)
    bank.open("b", 0)
    for _ in range(500):
        bank.transfer("a", "b", 1)
        bank.transfer("b", "a", 1)
    assert len(bank.journal()) == 10
    assert bank.transfers_applied == 1000
    assert bank.journal()[-1].seq == 1002
    bank.check_invariant()
    assert bank.close("a") + bank.close("b") == 1000
    assert bank.ledger.money_in == bank.ledger.money_out == 1000


def test_transfer_if_funds_rejects_without_exception_and_changes_nothing() -> None:
    bank = Bank()
    bank.open("alice", 10)
    bank.open("bob", 0)
    assert bank.transfer_if_funds("alice", "bob", 11) is None
    assert bank.accounts() == {"alice": 10, "bob": 0}
    assert bank.transfer_if_funds("alice", "bob", 4) == 6
    assert bank.accounts() == {"alice": 6, "bob": 4}
    assert bank.transfers_applied == 1
    bank.check_invariant()


def test_balance_unlocked_reads_without_waiting_for_the_lock() -> None:
    """La lectura que usa el servidor para rechazar por fondos: un saldo real, sin tomar el lock."""
    bank = Bank()
    bank.open("alice", 10)
    bank.open("bob", 0)
    assert bank.transfer_if_funds("alice", "bob", 4) == 6
    with bank.lock:  # otro "hilo" dentro del banco: la lectura no espera
        assert bank.balance_unlocked("alice") == 6
        assert bank.balance_unlocked("bob") == 4
        assert bank.balance_unlocked("nobody") is None
    bank.close("bob")
    assert bank.balance_unlocked("bob") is None


def test_held_takes_the_lock_once_for_this_thread_and_blocks_the_others() -> None:
    bank = Bank()
    bank.open("alice", 100)
    bank.open("bob", 0)
    other_done = threading.Event()

    def other() -> None:
        bank.transfer("bob", "alice", 1)
        other_done.set()

    with bank.held():
        bank.transfer("alice", "bob", 10)
        assert bank.balance("alice") == 90
        worker = threading.Thread(target=other)
        worker.start()
        # Mientras este hilo tiene el banco, la transferencia del otro espera.
        assert not other_done.wait(0.2)
        assert bank.balance("bob") == 10
    worker.join(5)
    assert other_done.is_set()
    assert bank.accounts() == {"alice": 91, "bob": 9}
    bank.check_invariant()
