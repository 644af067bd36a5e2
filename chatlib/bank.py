"""El banco del chat: saldos por identificador protegidos por un único lock.

Cada operación (abrir, cerrar, consultar, transferir) es una sección crítica:
se toma ``self._lock`` para leer, validar y escribir como un solo paso, de modo
que dos hilos nunca intercalan su lectura-modificación-escritura sobre la misma
cuenta. Los datos viven en un ``Ledger``: los contadores ``money_in`` y
``money_out`` permiten verificar el invariante contable (dinero que entró −
dinero que salió == suma de saldos) y un diario acotado guarda las últimas
operaciones, así la memoria no crece aunque el servidor corra semanas.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import NamedTuple

__all__ = [
    "AccountExists",
    "Bank",
    "BankError",
    "InsufficientFunds",
    "InvalidAmount",
    "JournalEntry",
    "Ledger",
    "SelfTransfer",
    "UnknownAccount",
    "validate_amount",
    "verify_books",
]

DEFAULT_JOURNAL_SIZE = 1000
"""Entradas recientes que guarda el diario; los contadores cuentan todo."""

# Lo que usa una operación cuando su propio hilo ya tomó el lock con ``Bank.held``.
_ALREADY_HELD: AbstractContextManager[object] = nullcontext()


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
        # El mensaje se arma solo si alguien lo pide: en ráfagas de ``:t`` sin
        # fondos esta excepción se crea miles de veces por segundo.
        super().__init__(account, balance, amount)
        self.account = account
        self.balance = balance
        self.amount = amount

    def __str__(self) -> str:
        return f"{self.account!r} has {self.balance}, cannot pay {self.amount}"


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


class JournalEntry(NamedTuple):
    """Una operación ya aplicada. ``op`` es ``open``, ``close`` o ``transfer``.

    Inmutable; una tupla con nombre y no una ``dataclass(frozen=True)`` porque
    se crea una por transferencia y así cuesta la cuarta parte.
    """

    seq: int
    op: str
    account: str
    amount: int
    counterparty: str | None = None
    timestamp: float = 0.0


_new_tuple = tuple.__new__


def verify_books(balances: dict[str, int], expected_total: int) -> None:
    """El invariante contable: ningún saldo negativo y la suma igual a lo esperado."""
    negatives = {k: v for k, v in balances.items() if v < 0}
    if negatives:
        raise AssertionError(f"negative balances: {negatives}")
    total = sum(balances.values())
    if total != expected_total:
        raise AssertionError(f"money not conserved: total {total} != expected {expected_total}")


def validate_amount(amount: object, *, allow_zero: bool) -> int:
    """Valida que ``amount`` sea un ``int`` (no ``bool``) no negativo, o positivo."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidAmount(amount)
    if amount < 0 or (amount == 0 and not allow_zero):
        raise InvalidAmount(amount)
    return amount


class Ledger:
    """Los datos del banco, sin ninguna sincronización: saldos, contadores y diario reciente.

    Es la costura pública entre el banco y el laboratorio: ``Bank`` usa un
    ``Ledger`` siempre bajo su lock; las estrategias de ``chatlib.lab`` usan el
    mismo ``Ledger`` con otros locks (o sin ninguno) para estudiar qué pasa.
    Quien llama decide cómo proteger cada método.

    La memoria es acotada aunque el servidor corra semanas: el invariante se
    verifica con los contadores ``money_in``/``money_out`` y ``transfers``, y
    del diario se guardan solo las últimas ``journal_size`` entradas.
    """

    def __init__(self, journal_size: int = DEFAULT_JOURNAL_SIZE) -> None:
        self.balances: dict[str, int] = {}
        self.money_in = 0
        self.money_out = 0
        self.transfers = 0
        self.operations = 0
        self.journal: deque[JournalEntry] = deque(maxlen=journal_size)

    def record(self, op: str, account: str, amount: int, counterparty: str | None = None) -> None:
        """Cuenta la operación y la agrega al diario reciente."""
        self.operations += 1
        if op == "transfer":
            self.transfers += 1
        # ``tuple.__new__`` directo: ``JournalEntry(...)`` pasaría por el ``__new__`` en Python
        # de la tupla con nombre, una vez por transferencia.
        entry = (self.operations, op, account, amount, counterparty, time.time())
        self.journal.append(_new_tuple(JournalEntry, entry))

    def open(self, account: str, balance: int) -> None:
        """Agrega la cuenta con su saldo inicial (dinero que entra)."""
        if account in self.balances:
            raise AccountExists(account)
        self.balances[account] = balance
        self.money_in += balance
        self.record("open", account, balance)

    def close(self, account: str) -> int:
        """Quita la cuenta y devuelve su saldo (dinero que sale)."""
        try:
            balance = self.balances.pop(account)
        except KeyError:
            raise UnknownAccount(account) from None
        self.money_out += balance
        self.record("close", account, balance)
        return balance

    def balance(self, account: str) -> int:
        """Saldo de ``account``."""
        try:
            return self.balances[account]
        except KeyError:
            raise UnknownAccount(account) from None

    def expected_total(self) -> int:
        """Lo que debería sumar el banco: dinero que entró menos dinero que salió."""
        return self.money_in - self.money_out


class Bank:
    """Cuentas con saldo entero (dólares), atómicas bajo un único lock.

    Un lock grueso para todo el banco es la solución más simple y correcta: las
    operaciones son cortas (unos diccionarios y sumas), así que la contención es
    despreciable frente al costo de la red, y no hay riesgo de deadlock porque
    nunca se toma más de un lock. ``lock`` permite inyectar uno observado (el
    laboratorio lo hace para ver quién lo tiene); ``ledger`` son los datos.
    """

    def __init__(
        self, *, lock: AbstractContextManager[object] | None = None, journal_size: int = DEFAULT_JOURNAL_SIZE
    ) -> None:
        self.lock: AbstractContextManager[object] = lock if lock is not None else threading.Lock()
        self.ledger = Ledger(journal_size)
        self._holder: int | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        """Toma el lock una sola vez para varias operaciones seguidas de este hilo.

        Dentro del bloque, las operaciones de este hilo no vuelven a tomarlo (el
        lock no es reentrante); las de otros hilos esperan a que termine. El
        servidor procesa así una racha de ``:t`` que mueven dinero dentro de un
        lote: con cien hilos que transfieren a la vez, tomar el lock por comando
        hace que el GIL suelte al hilo dentro de la sección crítica y los demás
        hagan fila (un convoy). Nada de E/S dentro.
        """
        with self.lock:
            self._holder = threading.get_ident()
            try:
                yield
            finally:
                self._holder = None

    def _guard(self) -> AbstractContextManager[object]:
        """El lock, o nada si este hilo ya lo tiene por ``held``."""
        if self._holder is not None and self._holder == threading.get_ident():
            return _ALREADY_HELD
        return self.lock

    def open(self, account: str, balance: int) -> None:
        """Abre ``account`` con un saldo inicial ``balance`` >= 0 (dinero que entra)."""
        validate_amount(balance, allow_zero=True)
        with self._guard():
            self.ledger.open(account, balance)

    def close(self, account: str) -> int:
        """Cierra ``account`` y devuelve su saldo final (dinero que sale del banco)."""
        with self._guard():
            return self.ledger.close(account)

    def balance(self, account: str) -> int:
        """Saldo actual de ``account``."""
        with self._guard():
            return self.ledger.balance(account)

    def balance_unlocked(self, account: str) -> int | None:
        """El saldo de ``account`` leído sin el lock (``None`` si no existe).

        Una sola lectura de un diccionario es atómica en CPython, así que el valor
        es uno que la cuenta tuvo de verdad, aunque pueda cambiar apenas se leyó.
        Sirve solo para decisiones que siguen siendo ciertas si el saldo sube
        después: el servidor rechaza así una ``:t`` por fondos sin tomar el lock
        (ver ``Session.transfer``).
        """
        return self.ledger.balances.get(account)

    def transfer(self, source: str, target: str, amount: int) -> int:
        """Mueve ``amount`` > 0 de ``source`` a ``target``; devuelve el nuevo saldo de ``source``.

        Lectura, verificación y escritura de ambas cuentas ocurren dentro del
        mismo lock: o se aplica la transferencia completa o no cambia nada.
        """
        if type(amount) is not int or amount <= 0:
            validate_amount(amount, allow_zero=False)
        if source == target:
            raise SelfTransfer(source)
        if self._holder is not None and self._holder == threading.get_ident():
            return self._move(source, target, amount)
        with self.lock:
            return self._move(source, target, amount)

    def transfer_if_funds(self, source: str, target: str, amount: int) -> int | None:
        """Como ``transfer``, pero ``None`` (sin excepción) si los fondos no alcanzan.

        Un ``:t`` rechazado por fondos es el caso común de una ráfaga: crear,
        lanzar y atrapar la excepción costaba más que la transferencia.
        """
        if type(amount) is not int or amount <= 0:
            validate_amount(amount, allow_zero=False)
        if source == target:
            raise SelfTransfer(source)
        if self._holder is not None and self._holder == threading.get_ident():
            return self._move_if_funds(source, target, amount)
        with self.lock:
            return self._move_if_funds(source, target, amount)

    def _move_if_funds(self, source: str, target: str, amount: int) -> int | None:
        balances = self.ledger.balances
        if source in balances and target in balances and balances[source] < amount:
            return None
        return self._move(source, target, amount)

    def _move(self, source: str, target: str, amount: int) -> int:
        """El cuerpo de ``transfer``; quien llama tiene el lock."""
        balances = self.ledger.balances
        if source not in balances:
            raise UnknownAccount(source)
        if target not in balances:
            raise UnknownAccount(target)
        available = balances[source]
        if available < amount:
            raise InsufficientFunds(source, available, amount)
        balances[source] = available - amount
        balances[target] += amount
        self.ledger.record("transfer", source, amount, target)
        return available - amount

    def accounts(self) -> dict[str, int]:
        """Copia consistente de todos los saldos."""
        with self._guard():
            return dict(self.ledger.balances)

    def total(self) -> int:
        """Suma de todos los saldos abiertos."""
        with self._guard():
            return sum(self.ledger.balances.values())

    @property
    def transfers_applied(self) -> int:
        """Transferencias aplicadas desde que se creó el banco (un contador, no el diario)."""
        return self.ledger.transfers

    def journal(self) -> list[JournalEntry]:
        """Copia del diario reciente (las últimas ``journal_size`` operaciones), en orden."""
        with self._guard():
            return list(self.ledger.journal)

    def check_invariant(self) -> None:
        """Lanza ``AssertionError`` si el dinero no cuadra o hay un saldo negativo."""
        with self._guard():
            balances = dict(self.ledger.balances)
            expected = self.ledger.expected_total()
        verify_books(balances, expected)
