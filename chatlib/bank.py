"""El banco del chat: saldos por identificador protegidos por un único lock.

Cada operación (abrir, cerrar, consultar, transferir) es una sección crítica:
se toma ``self._lock`` para leer, validar y escribir como un solo paso, de modo
que dos hilos nunca intercalan su lectura-modificación-escritura sobre la misma
cuenta. Además se lleva un diario (journal) de solo agregar y el par de
contadores ``money_in``/``money_out`` que permiten verificar el invariante
contable: dinero que entró − dinero que salió == suma de saldos.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

__all__ = [
    "AccountExists",
    "Bank",
    "BankError",
    "InsufficientFunds",
    "InvalidAmount",
    "JournalEntry",
    "SelfTransfer",
    "UnknownAccount",
    "verify_books",
]


class BankError(Exception):
    """Error de negocio del banco: la operación no se realizó y nada cambió."""


class UnknownAccount(BankError):
    """La cuenta no existe (nunca se abrió o su dueño ya se desconectó)."""

    def __init__(self, account: str) -> None:
        super().__init__(f"unknown account {account!r}")
        self.account = account


class AccountExists(BankError):
    """Se intentó abrir una cuenta que ya está abierta."""

    def __init__(self, account: str) -> None:
        super().__init__(f"account {account!r} already exists")
        self.account = account


class InsufficientFunds(BankError):
    """El saldo del emisor no alcanza: transferir dejaría un saldo negativo."""

    def __init__(self, account: str, balance: int, amount: int) -> None:
        super().__init__(f"{account!r} has {balance}, cannot pay {amount}")
        self.account = account
        self.balance = balance
        self.amount = amount


class InvalidAmount(BankError):
    """El monto no es un entero válido (negativo, cero en transferencias, o no entero)."""

    def __init__(self, amount: object) -> None:
        super().__init__(f"invalid amount {amount!r}")
        self.amount = amount


class SelfTransfer(BankError):
    """Transferirse a uno mismo no tiene sentido y se rechaza."""

    def __init__(self, account: str) -> None:
        super().__init__(f"{account!r} cannot transfer to itself")
        self.account = account


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """Una operación ya aplicada. ``op`` es ``open``, ``close`` o ``transfer``."""

    seq: int
    op: str
    account: str
    amount: int
    counterparty: str | None = None
    timestamp: float = 0.0


def verify_books(balances: dict[str, int], expected_total: int) -> None:
    """El invariante contable: ningún saldo negativo y la suma igual a lo esperado."""
    negatives = {k: v for k, v in balances.items() if v < 0}
    if negatives:
        raise AssertionError(f"negative balances: {negatives}")
    total = sum(balances.values())
    if total != expected_total:
        raise AssertionError(f"money not conserved: total {total} != expected {expected_total}")


def _check_amount(amount: object, *, allow_zero: bool) -> int:
    """Valida que ``amount`` sea un ``int`` (no ``bool``) no negativo, o positivo."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidAmount(amount)
    if amount < 0 or (amount == 0 and not allow_zero):
        raise InvalidAmount(amount)
    return amount


class Bank:
    """Cuentas con saldo entero (dólares), atómicas bajo un único ``threading.Lock``.

    Un lock grueso para todo el banco es la solución más simple y correcta: las
    operaciones son cortas (unos diccionarios y sumas), así que la contención es
    despreciable frente al costo de la red, y no hay riesgo de deadlock porque
    nunca se toma más de un lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._balances: dict[str, int] = {}
        self._journal: list[JournalEntry] = []
        self._money_in = 0
        self._money_out = 0

    def _record(self, op: str, account: str, amount: int, counterparty: str | None = None) -> None:
        """Agrega una entrada al diario; se llama siempre con el lock tomado."""
        self._journal.append(
            JournalEntry(len(self._journal) + 1, op, account, amount, counterparty, time.time())
        )

    def open(self, account: str, balance: int) -> None:
        """Abre ``account`` con un saldo inicial ``balance`` >= 0 (dinero que entra)."""
        _check_amount(balance, allow_zero=True)
        with self._lock:
            if account in self._balances:
                raise AccountExists(account)
            self._balances[account] = balance
            self._money_in += balance
            self._record("open", account, balance)

    def close(self, account: str) -> int:
        """Cierra ``account`` y devuelve su saldo final (dinero que sale del banco)."""
        with self._lock:
            try:
                balance = self._balances.pop(account)
            except KeyError:
                raise UnknownAccount(account) from None
            self._money_out += balance
            self._record("close", account, balance)
            return balance

    def balance(self, account: str) -> int:
        """Saldo actual de ``account``."""
        with self._lock:
            try:
                return self._balances[account]
            except KeyError:
                raise UnknownAccount(account) from None

    def transfer(self, source: str, target: str, amount: int) -> int:
        """Mueve ``amount`` > 0 de ``source`` a ``target``; devuelve el nuevo saldo de ``source``.

        Lectura, verificación y escritura de ambas cuentas ocurren dentro del
        mismo lock: o se aplica la transferencia completa o no cambia nada.
        """
        _check_amount(amount, allow_zero=False)
        if source == target:
            raise SelfTransfer(source)
        with self._lock:
            if source not in self._balances:
                raise UnknownAccount(source)
            if target not in self._balances:
                raise UnknownAccount(target)
            available = self._balances[source]
            if available < amount:
                raise InsufficientFunds(source, available, amount)
            self._balances[source] = available - amount
            self._balances[target] += amount
            self._record("transfer", source, amount, target)
            return available - amount

    def accounts(self) -> dict[str, int]:
        """Copia consistente de todos los saldos."""
        with self._lock:
            return dict(self._balances)

    def total(self) -> int:
        """Suma de todos los saldos abiertos."""
        with self._lock:
            return sum(self._balances.values())

    def journal(self) -> list[JournalEntry]:
        """Copia del diario de operaciones, en orden de aplicación."""
        with self._lock:
            return list(self._journal)

    def check_invariant(self) -> None:
        """Lanza ``AssertionError`` si el dinero no cuadra o hay un saldo negativo."""
        with self._lock:
            balances = dict(self._balances)
            expected = self._money_in - self._money_out
        verify_books(balances, expected)
