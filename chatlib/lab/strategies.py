"""Estrategias de sincronización del banco, con la misma interfaz que ``chatlib.bank.Bank``.

Existen para el laboratorio de condiciones de carrera (``chatlib.lab.racelab`` y el
notebook ``02_condiciones_de_carrera``): cada clase resuelve (o no) la sección
crítica de una transferencia de una manera distinta, y todas se pueden observar
paso a paso con un ``step_hook``.

- ``UnsafeBank``: lee, verifica y escribe sin lock. Pierde actualizaciones y
  permite saldos negativos.
- ``CoarseLockBank``: es ``Bank`` tal cual (un único lock para todo el banco);
  solo agrega la posibilidad de observar su lock.
- ``NaiveLockBank``: un lock por cuenta, tomados en el orden de la llamada
  (origen y luego destino). A→B concurrente con B→A puede quedar en deadlock;
  la espera tiene un tiempo límite y se reporta con ``DeadlockDetected``.
- ``OrderedLockBank``: un lock por cuenta, tomados en un orden global (por
  nombre de cuenta). Sin ciclos de espera no hay deadlock: es la corrección.

El ``step_hook`` recibe ``(thread_name, step, account, value)`` en cada paso
observable. Los pasos son ``wait`` (va a pedir un lock), ``lock`` (lo obtuvo),
``unlock`` (lo soltó), ``timeout`` (se rindió esperando un lock), ``check``
(leyó el saldo para validarlo), ``read`` y ``write`` (las dos mitades de
``saldo += delta``). Solo el laboratorio lo usa; con ``None`` no cuesta nada.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import TracebackType

from chatlib.bank import (
    AccountExists,
    Bank,
    BankError,
    InsufficientFunds,
    SelfTransfer,
    UnknownAccount,
    validate_amount,
    verify_books,
)

__all__ = [
    "BANK_LOCK_KEY",
    "STRATEGIES",
    "CoarseLockBank",
    "DeadlockDetected",
    "NaiveLockBank",
    "OrderedLockBank",
    "StepHook",
    "UnsafeBank",
    "make_bank",
]

StepHook = Callable[[str, str, str, int], None]
"""``hook(thread_name, step, account, value)``; puede bloquear para ordenar los hilos."""

BANK_LOCK_KEY = "<bank>"
"""Nombre con que se reporta el lock único de ``CoarseLockBank`` (no es una cuenta)."""

DEFAULT_LOCK_TIMEOUT = 1.0


class DeadlockDetected(BankError):
    """No se obtuvo un lock de cuenta dentro del tiempo límite: probable deadlock.

    Hereda de ``BankError`` porque cumple su contrato: la transferencia se
    abandonó antes de escribir y se soltaron los locks tomados, así que nada
    cambió y quien la llamó puede reintentar o informar el error.
    """

    def __init__(self, account: str, held: tuple[str, ...], timeout: float) -> None:
        super().__init__(
            f"could not lock {account!r} within {timeout:g}s while holding {list(held)}: probable deadlock"
        )
        self.account = account
        self.held = held
        self.timeout = timeout


def _thread_name() -> str:
    return threading.current_thread().name


class _ObservedLock:
    """Envuelve un ``threading.Lock`` y avisa al hook al pedirlo, obtenerlo y soltarlo."""

    def __init__(self, lock: threading.Lock, key: str, hook: StepHook) -> None:
        self._lock = lock
        self._key = key
        self._hook = hook

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self._hook(_thread_name(), "wait", self._key, 0)
        acquired = self._lock.acquire(blocking, timeout)
        if acquired:
            self._hook(_thread_name(), "lock", self._key, 0)
        return acquired

    def release(self) -> None:
        self._lock.release()
        self._hook(_thread_name(), "unlock", self._key, 0)

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class CoarseLockBank(Bank):
    """El banco de producción sin cambios: un único lock protege todas las operaciones.

    Con ``step_hook`` se le inyecta un lock observado (un lock normal que
    avisa al pedirlo, obtenerlo y soltarlo), de modo que el laboratorio ve quién lo tiene y quién espera; el
    código de ``Bank.transfer`` que se ejecuta es exactamente el de producción.
    """

    def __init__(self, *, step_hook: StepHook | None = None) -> None:
        lock = None if step_hook is None else _ObservedLock(threading.Lock(), BANK_LOCK_KEY, step_hook)
        super().__init__(lock=lock)
        self.step_hook = step_hook


class _SteppedBank(Bank):
    """Base común: la transferencia descompuesta en pasos observables.

    ``saldo -= monto`` no es atómico: es leer, calcular y escribir. Aquí esas
    mitades son explícitas (``_add``) para que el hook pueda pausar entre ellas
    y para contar escrituras obsoletas (valor actual distinto del leído).
    Las subclases deciden qué locks rodean a ``_apply_transfer``.
    """

    def __init__(self, *, step_hook: StepHook | None = None) -> None:
        super().__init__()
        self.step_hook = step_hook
        self.stale_writes = 0
        self.negative_writes = 0

    def _step(self, step: str, account: str, value: int = 0) -> None:
        hook = self.step_hook
        if hook is not None:
            hook(_thread_name(), step, account, value)

    def _pause(self) -> None:
        """Punto entre la lectura y la escritura; solo ``UnsafeBank`` lo ensancha."""

    def _add(self, account: str, delta: int) -> int:
        """``balances[account] += delta`` en dos pasos observables; devuelve el valor escrito."""
        balances = self.ledger.balances
        current = balances[account]
        self._step("read", account, current)
        self._pause()
        updated = current + delta
        if balances[account] != current:
            self.stale_writes += 1
        if updated < 0:
            self.negative_writes += 1
        balances[account] = updated
        self._step("write", account, updated)
        return updated

    def _apply_transfer(self, source: str, target: str, amount: int) -> int:
        """Verifica fondos y mueve el dinero; el llamador ya tomó los locks que correspondan."""
        balances = self.ledger.balances
        if source not in balances:
            raise UnknownAccount(source)
        if target not in balances:
            raise UnknownAccount(target)
        available = balances[source]
        self._step("check", source, available)
        if available < amount:
            raise InsufficientFunds(source, available, amount)
        self._pause()
        remaining = self._add(source, -amount)
        self._add(target, amount)
        self._journal_transfer(source, target, amount)
        return remaining

    def _journal_transfer(self, source: str, target: str, amount: int) -> None:
        with self.lock:
            self.ledger.record("transfer", source, amount, target)


class UnsafeBank(_SteppedBank):
    """Transferencias sin ningún lock: la sección crítica queda desprotegida a propósito.

    ``window`` > 0 duerme ese número de segundos entre cada lectura y su
    escritura (y entre la verificación de fondos y el débito). Dormir suelta
    el GIL, así que otro hilo entra casi con seguridad a la ventana: la
    carrera que con el GIL aparece de vez en cuando se vuelve reproducible.

    Abrir y cerrar cuentas sí usan el lock heredado; lo inseguro es solo la
    transferencia, que es lo que el laboratorio estudia. Ni siquiera el diario
    de transferencias se protege.
    """

    def __init__(self, window: float = 0.0, *, step_hook: StepHook | None = None) -> None:
        if window < 0:
            raise ValueError(f"window must be >= 0, got {window!r}")
        super().__init__(step_hook=step_hook)
        self.window = window

    def _pause(self) -> None:
        if self.window > 0:
            time.sleep(self.window)

    def _journal_transfer(self, source: str, target: str, amount: int) -> None:
        self.ledger.record("transfer", source, amount, target)

    def transfer(self, source: str, target: str, amount: int) -> int:
        """Como ``Bank.transfer`` pero sin lock: leer, verificar y escribir pueden intercalarse."""
        validate_amount(amount, allow_zero=False)
        if source == target:
            raise SelfTransfer(source)
        return self._apply_transfer(source, target, amount)


class _PerAccountLockBank(_SteppedBank):
    """Un lock por cuenta; ``self.lock`` (heredado) protege solo el registro.

    El registro es el diccionario de cuentas y sus locks, el diario y los
    contadores de dinero. Orden de locks fijo: primero los de cuenta y después,
    brevemente, el del registro; nunca al revés, así el registro no participa
    en ningún ciclo de espera. Toda espera por un lock de cuenta tiene tiempo
    límite y termina en ``DeadlockDetected`` en vez de colgar el programa.
    """

    def __init__(
        self, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT, step_hook: StepHook | None = None
    ) -> None:
        if lock_timeout <= 0:
            raise ValueError(f"lock_timeout must be > 0, got {lock_timeout!r}")
        super().__init__(step_hook=step_hook)
        self.lock_timeout = lock_timeout
        self._account_locks: dict[str, threading.Lock] = {}

    def _lock_order(self, source: str, target: str) -> tuple[str, str]:
        raise NotImplementedError

    def _lookup(self, account: str) -> threading.Lock:
        with self.lock:
            try:
                return self._account_locks[account]
            except KeyError:
                raise UnknownAccount(account) from None

    @contextmanager
    def _holding(self, accounts: Iterable[str]) -> Iterator[None]:
        """Toma los locks de ``accounts`` en el orden dado y los suelta al revés."""
        held: list[tuple[str, threading.Lock]] = []
        try:
            for account in accounts:
                lock = self._lookup(account)
                self._step("wait", account)
                if not lock.acquire(timeout=self.lock_timeout):
                    self._step("timeout", account)
                    raise DeadlockDetected(account, tuple(a for a, _ in held), self.lock_timeout)
                held.append((account, lock))
                self._step("lock", account)
                if self._account_locks.get(account) is not lock:
                    raise UnknownAccount(account)
            yield
        finally:
            for account, lock in reversed(held):
                lock.release()
                self._step("unlock", account)

    def open(self, account: str, balance: int) -> None:
        validate_amount(balance, allow_zero=True)
        with self.lock:
            if account in self.ledger.balances:
                raise AccountExists(account)
            self._account_locks[account] = threading.Lock()
            self.ledger.open(account, balance)

    def close(self, account: str) -> int:
        """Cierra la cuenta esperando su lock, para no cerrarla en medio de una transferencia."""
        with self._holding([account]), self.lock:
            del self._account_locks[account]
            return self.ledger.close(account)

    def transfer(self, source: str, target: str, amount: int) -> int:
        """Toma ambos locks de cuenta (en el orden de la estrategia) y transfiere."""
        validate_amount(amount, allow_zero=False)
        if source == target:
            raise SelfTransfer(source)
        with self._holding(self._lock_order(source, target)):
            return self._apply_transfer(source, target, amount)

    @contextmanager
    def _quiescent(self) -> Iterator[None]:
        """Toma todos los locks de cuenta (en orden global) y el del registro.

        Así una foto del banco nunca ve una transferencia a medias. Si mientras
        se esperaba se abrió otra cuenta, se reintenta con la lista nueva.
        """
        while True:
            with self.lock:
                names = sorted(self._account_locks)
            with self._holding(names), self.lock:
                if sorted(self._account_locks) == names:
                    yield
                    return

    def balance(self, account: str) -> int:
        with self._holding([account]):
            return super().balance(account)

    def accounts(self) -> dict[str, int]:
        with self._quiescent():
            return dict(self.ledger.balances)

    def total(self) -> int:
        with self._quiescent():
            return sum(self.ledger.balances.values())

    def check_invariant(self) -> None:
        with self._quiescent():
            balances = dict(self.ledger.balances)
            expected = self.ledger.expected_total()
        verify_books(balances, expected)


class NaiveLockBank(_PerAccountLockBank):
    """Locks por cuenta en el orden de la llamada: origen y luego destino.

    Parece razonable y funciona casi siempre, pero A→B y B→A concurrentes
    pueden tomar cada uno su primer lock y esperar para siempre el del otro
    (espera circular). Aquí la espera vence a los ``lock_timeout`` segundos y
    la transferencia falla con ``DeadlockDetected``. Las fotos del banco
    (``accounts``, ``total``...) toman los locks en orden global, así que
    también pueden chocar con una transferencia y reportar el deadlock.
    """

    def _lock_order(self, source: str, target: str) -> tuple[str, str]:
        return (source, target)


class OrderedLockBank(_PerAccountLockBank):
    """Locks por cuenta tomados siempre en orden global (por nombre): sin deadlock.

    Si todos piden los locks en el mismo orden no puede formarse un ciclo de
    espera: quien tiene el menor de los dos nunca espera a quien tiene el
    mayor. El tiempo límite queda solo como red de seguridad.
    """

    def _lock_order(self, source: str, target: str) -> tuple[str, str]:
        return (source, target) if source < target else (target, source)


STRATEGIES: dict[str, type[Bank]] = {
    "unsafe": UnsafeBank,
    "coarse": CoarseLockBank,
    "naive": NaiveLockBank,
    "ordered": OrderedLockBank,
}
"""Nombre de estrategia → clase, para el notebook y el corredor de experimentos."""


def make_bank(strategy: str, *, step_hook: StepHook | None = None, **options: float) -> Bank:
    """Crea un banco de la estrategia ``strategy``; ``options`` van al constructor.

    Las opciones que la estrategia no usa (``window`` fuera de ``unsafe``,
    ``lock_timeout`` fuera de los bancos con lock por cuenta) se ignoran, para
    que un experimento pueda pasar las mismas opciones a todas.
    """
    try:
        cls = STRATEGIES[strategy]
    except KeyError:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {sorted(STRATEGIES)}") from None
    if cls is UnsafeBank:
        return UnsafeBank(options.get("window", 0.0), step_hook=step_hook)
    if issubclass(cls, _PerAccountLockBank):
        timeout = options.get("lock_timeout", DEFAULT_LOCK_TIMEOUT)
        return cls(lock_timeout=timeout, step_hook=step_hook)
    return CoarseLockBank(step_hook=step_hook)
