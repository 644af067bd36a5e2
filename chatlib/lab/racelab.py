"""Laboratorio de condiciones de carrera sobre las estrategias de ``chatlib.lab.strategies``.

Dos tipos de experimento:

- Demostraciones deterministas (``run_interleaving``, ``lost_update_demo``,
  ``deadlock_demo``): un director deja avanzar a un solo hilo a la vez, un paso
  observable por turno, siguiendo un guion. El resultado no depende del
  planificador del sistema operativo ni del GIL: cada ejecución produce la
  misma intercalación, y cada paso queda anotado con ``time.perf_counter``
  para dibujarlo como una línea de tiempo de dos hilos.
- Experimentos estadísticos (``run_trial``, ``run_experiment``): T hilos × K
  transferencias aleatorias con semillas fijas, sin director; mide cuánto
  dinero aparece o desaparece y cuántas transferencias por segundo se logran.
- Medición de rendimiento (``measure_bank_throughput``): cuánto cuesta cada
  estrategia, con trabajo suficiente por punto (por omisión 100 000
  transferencias), una ronda de calentamiento descartada y varias
  repeticiones alternadas; se informa la mediana con el mínimo y el máximo.

Definiciones usadas en los resultados:

- ``money_error`` = total final − total esperado. Es la verdad de fondo: > 0
  es dinero creado de la nada, < 0 dinero destruido, 0 es conservación.
- ``lost_updates`` = escrituras que pisaron una actualización ajena. En las
  demostraciones se cuentan exactamente sobre el registro de pasos (otro hilo
  escribió la cuenta entre la lectura y la escritura de este). En los
  experimentos es el contador ``stale_writes`` del banco, que compara el saldo
  justo antes de escribir con el leído: es una cota inferior, porque esa
  comparación tampoco es atómica. ``CoarseLockBank`` no lo mide y reporta 0:
  su lock lo garantiza.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from chatlib import protocol as proto
from chatlib.bank import Bank, BankError, InsufficientFunds
from chatlib.client import ChatClient
from chatlib.lab.strategies import DEFAULT_LOCK_TIMEOUT, STRATEGIES, DeadlockDetected, make_bank
from chatlib.server import ChatServer

__all__ = [
    "DEADLOCK_SCENARIO",
    "LOST_UPDATE_SCENARIO",
    "STEP_LABELS",
    "THROUGHPUT_STRATEGIES",
    "InterleavingResult",
    "LabTimeout",
    "Scenario",
    "SocketDemoResult",
    "StepEvent",
    "ThroughputPoint",
    "TransferOutcome",
    "TrialResult",
    "deadlock_demo",
    "describe",
    "lost_update_demo",
    "measure_bank_throughput",
    "run_experiment",
    "run_interleaving",
    "run_socket_demo",
    "run_trial",
    "summarize",
    "throughput_findings",
]

DEFAULT_LAB_TIMEOUT = 5.0
DEMO_LOCK_TIMEOUT = 0.2

STEP_LABELS: dict[str, str] = {
    "start": "inicio",
    "wait": "pide lock",
    "lock": "toma lock",
    "unlock": "suelta lock",
    "timeout": "se rinde",
    "check": "verifica",
    "read": "lee",
    "write": "escribe",
    "done": "termina",
    "error": "falla",
}
"""Nombre de cada paso en español, para rotular gráficos y tablas."""


class LabTimeout(RuntimeError):
    """Un hilo del laboratorio no respondió a tiempo: el experimento se colgó."""


@dataclass(frozen=True, slots=True)
class StepEvent:
    """Un paso observado: quién, qué, sobre qué cuenta, con qué valor y cuándo (s desde el inicio)."""

    thread: str
    step: str
    account: str
    value: int
    time: float


def describe(event: StepEvent) -> str:
    """Rótulo corto en español, p. ej. ``lee A=100`` o ``toma lock B``."""
    label = STEP_LABELS.get(event.step, event.step)
    if event.step in ("check", "read", "write"):
        return f"{label} {event.account}={event.value}"
    if event.account:
        return f"{label} {event.account}"
    return label


@dataclass(frozen=True, slots=True)
class TransferOutcome:
    """Cómo terminó la transferencia de un hilo: saldo devuelto o nombre de la excepción."""

    thread: str
    source: str
    target: str
    amount: int
    returned: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Scenario:
    """Saldos iniciales, una transferencia por hilo y el guion de turnos del director."""

    initial: Mapping[str, int]
    transfers: Mapping[str, tuple[str, str, int]]
    schedule: Sequence[str]


LOST_UPDATE_SCENARIO = Scenario(
    initial={"A": 100, "B": 0},
    transfers={"T1": ("A", "B", 80), "T2": ("A", "B", 70)},
    schedule=("T1", "T2", "T1", "T1", "T2", "T2", "T1", "T2", "T1", "T2"),
)
"""Ambos verifican A=100 antes de que nadie debite (A termina en −50) y ambos
leen B=0 antes de que nadie acredite (se pierde el abono de T1)."""

DEADLOCK_SCENARIO = Scenario(
    initial={"A": 100, "B": 100},
    transfers={"T1": ("A", "B", 10), "T2": ("B", "A", 20)},
    schedule=("T1", "T2", "T1", "T2", "T1", "T2"),
)
"""A→B y B→A: cada hilo toma su primer lock y recién entonces pide el segundo."""


@dataclass(frozen=True)
class InterleavingResult:
    """Todo lo que pasó en una demostración determinista, como datos simples."""

    strategy: str
    initial: dict[str, int]
    events: list[StepEvent]
    outcomes: list[TransferOutcome]
    final: dict[str, int]

    @property
    def expected_total(self) -> int:
        return sum(self.initial.values())

    @property
    def final_total(self) -> int:
        return sum(self.final.values())

    @property
    def money_error(self) -> int:
        return self.final_total - self.expected_total

    @property
    def negative_accounts(self) -> dict[str, int]:
        return {name: value for name, value in self.final.items() if value < 0}

    @property
    def deadlocks(self) -> int:
        return sum(1 for o in self.outcomes if o.error == DeadlockDetected.__name__)

    @property
    def lost_updates(self) -> list[StepEvent]:
        """Escrituras que pisaron una escritura ajena hecha después de su propia lectura."""
        lost: list[StepEvent] = []
        last_read: dict[tuple[str, str], int] = {}
        for index, event in enumerate(self.events):
            key = (event.thread, event.account)
            if event.step == "read":
                last_read[key] = index
            elif event.step == "write" and key in last_read:
                between = self.events[last_read[key] + 1 : index]
                if any(
                    e.step == "write" and e.account == event.account and e.thread != event.thread
                    for e in between
                ):
                    lost.append(event)
        return lost

    @property
    def conserved(self) -> bool:
        """El dinero se conservó y ningún saldo quedó negativo."""
        return self.money_error == 0 and not self.negative_accounts


class _Director:
    """Deja correr a un solo hilo por vez, hasta su próximo paso observable.

    Cada hilo se detiene en el hook después de cada paso; el hilo principal
    elige a quién darle el turno. Un hilo que espera un lock que tiene otro no
    recibe turno (se bloquearía fuera del control del director); si todos están
    así hay un deadlock real, y se le da el turno a la primera víctima para que
    su espera con tiempo límite venza y lo reporte.
    """

    def __init__(self, threads: Sequence[str], timeout: float) -> None:
        self._order = list(threads)
        self._timeout = timeout
        self._cond = threading.Condition()
        self._granted: str | None = None
        self._parked: set[str] = set()
        self._done: set[str] = set()
        self._last: dict[str, tuple[str, str]] = {}
        self._holders: dict[str, str] = {}
        self._released = False
        self._t0 = time.perf_counter()
        self.events: list[StepEvent] = []

    def hook(self, thread: str, step: str, account: str, value: int) -> None:
        """El ``step_hook`` del banco: anota el paso y espera el próximo turno."""
        if thread not in self._order:
            return
        with self._cond:
            self._note(thread, step, account, value)
            if step == "lock":
                self._holders[account] = thread
            elif step == "unlock":
                self._holders.pop(account, None)
            self._last[thread] = (step, account)
            self._parked.add(thread)
            if self._granted == thread:
                self._granted = None
            self._cond.notify_all()
            granted = self._cond.wait_for(lambda: self._granted == thread or self._released, self._timeout)
            self._parked.discard(thread)
            if not granted:
                raise LabTimeout(f"{thread} waited more than {self._timeout}s for its turn")

    def finish(self, thread: str, error: str | None) -> None:
        with self._cond:
            self._note(thread, "error" if error else "done", error or "", 0)
            self._done.add(thread)
            if self._granted == thread:
                self._granted = None
            self._cond.notify_all()

    def _note(self, thread: str, step: str, account: str, value: int) -> None:
        self.events.append(StepEvent(thread, step, account, value, time.perf_counter() - self._t0))

    def _blocked(self, thread: str) -> bool:
        step, account = self._last.get(thread, ("", ""))
        return step == "wait" and self._holders.get(account, thread) != thread

    def _settled(self) -> bool:
        return self._granted is None and all(t in self._parked or t in self._done for t in self._order)

    def _wait_settled(self, timeout: float) -> None:
        if not self._cond.wait_for(self._settled, timeout):
            self._released = True
            self._cond.notify_all()
            raise LabTimeout(f"threads did not settle within {timeout}s; last events: {self.events[-4:]}")

    def run(self, schedule: Iterable[str], victim_timeout: float) -> None:
        """Reparte turnos según ``schedule`` y luego en orden hasta que todos terminen."""
        pending = deque(schedule)
        with self._cond:
            self._wait_settled(self._timeout)
            while len(self._done) < len(self._order):
                alive = [t for t in self._order if t not in self._done]
                runnable = [t for t in alive if not self._blocked(t)]
                wait = self._timeout
                while pending and pending[0] in self._done:
                    pending.popleft()
                if not runnable:
                    chosen = alive[0]
                    wait += victim_timeout
                elif pending and pending[0] in runnable:
                    chosen = pending.popleft()
                else:
                    chosen = runnable[0]
                self._granted = chosen
                self._cond.notify_all()
                self._wait_settled(wait)

    def release_all(self) -> None:
        with self._cond:
            self._released = True
            self._cond.notify_all()


def run_interleaving(
    strategy: str,
    scenario: Scenario,
    *,
    lock_timeout: float = DEMO_LOCK_TIMEOUT,
    timeout: float = DEFAULT_LAB_TIMEOUT,
) -> InterleavingResult:
    """Ejecuta ``scenario`` sobre un banco nuevo de ``strategy`` con intercalación forzada.

    Cada hilo hace una transferencia; el director le da turnos según el guion.
    ``lock_timeout`` es el límite de espera de los bancos con lock por cuenta y
    ``timeout`` el máximo que el director espera a un hilo antes de declarar
    que el laboratorio se colgó (``LabTimeout``).
    """
    names = list(scenario.transfers)
    director = _Director(names, timeout)
    bank = make_bank(strategy, step_hook=director.hook, window=0.0, lock_timeout=lock_timeout)
    for account, balance in scenario.initial.items():
        bank.open(account, balance)
    outcomes: dict[str, TransferOutcome] = {}

    def work(name: str, source: str, target: str, amount: int) -> None:
        returned: int | None = None
        error: str | None = None
        try:
            director.hook(name, "start", "", 0)
            returned = bank.transfer(source, target, amount)
        except (BankError, LabTimeout) as exc:
            error = type(exc).__name__
        finally:
            outcomes[name] = TransferOutcome(name, source, target, amount, returned, error)
            director.finish(name, error)

    threads = [
        threading.Thread(target=work, args=(name, *scenario.transfers[name]), name=name, daemon=True)
        for name in names
    ]
    for thread in threads:
        thread.start()
    try:
        director.run(scenario.schedule, victim_timeout=lock_timeout)
    finally:
        director.release_all()
        for thread in threads:
            thread.join(timeout)
    if any(thread.is_alive() for thread in threads):
        raise LabTimeout(f"{strategy}: worker threads still alive after {timeout}s")
    return InterleavingResult(
        strategy=strategy,
        initial=dict(scenario.initial),
        events=list(director.events),
        outcomes=[outcomes[name] for name in names],
        final=bank.accounts(),
    )


def lost_update_demo(strategy: str, **options: float) -> InterleavingResult:
    """Dos retiros de la misma cuenta intercalados a propósito (ver ``LOST_UPDATE_SCENARIO``)."""
    return run_interleaving(strategy, LOST_UPDATE_SCENARIO, **options)


def deadlock_demo(strategy: str, **options: float) -> InterleavingResult:
    """A→B contra B→A, cada uno con su primer lock tomado (ver ``DEADLOCK_SCENARIO``)."""
    return run_interleaving(strategy, DEADLOCK_SCENARIO, **options)


@dataclass(frozen=True, slots=True)
class TrialResult:
    """Un ensayo estadístico: ``threads`` hilos × ``transfers`` / ``threads`` transferencias."""

    strategy: str
    threads: int
    trial: int
    seed: int
    window: float
    transfers: int
    applied: int
    rejected: int
    deadlocks: int
    expected_total: int
    final_total: int
    money_error: int
    lost_updates: int
    negative_writes: int
    negative_accounts: int
    min_balance: int
    elapsed: float
    transfers_per_second: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _plan(
    rng: random.Random, names: Sequence[str], count: int, max_amount: int
) -> list[tuple[str, str, int]]:
    """Plan de un hilo: ``count`` transferencias (origen, destino, monto) al azar."""
    plan = []
    for _ in range(count):
        source, target = rng.sample(names, 2)
        plan.append((source, target, rng.randint(1, max_amount)))
    return plan


def _run_timed(
    workers: list[threading.Thread], start: threading.Barrier, join_timeout: float, label: str
) -> float:
    """Lanza ``workers``, mide desde que todos pasan la barrera hasta que terminan.

    La espera total está acotada por ``join_timeout``; si alguno sigue vivo es
    ``LabTimeout`` (un experimento colgado nunca cuelga al notebook).
    """
    for worker in workers:
        worker.start()
    start.wait(join_timeout)
    began = time.perf_counter()
    deadline = began + join_timeout
    for worker in workers:
        worker.join(max(0.0, deadline - time.perf_counter()))
    elapsed = time.perf_counter() - began
    if any(worker.is_alive() for worker in workers):
        raise LabTimeout(f"{label} did not finish in {join_timeout}s")
    return elapsed


def run_trial(
    strategy: str,
    threads: int,
    *,
    transfers_per_thread: int = 300,
    accounts: int = 6,
    initial_balance: int = 1_000,
    max_amount: int = 400,
    seed: int = 0,
    trial: int = 0,
    window: float = 0.0,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    join_timeout: float = 60.0,
) -> TrialResult:
    """Un ensayo: cada hilo ejecuta su propio plan aleatorio (semilla fija) contra un banco nuevo.

    Los planes se generan antes de largar, y todos los hilos parten juntos
    desde una barrera; el tiempo medido va de la largada al último ``join``.
    Las transferencias rechazadas por fondos o por deadlock se cuentan, no se
    reintentan. Un ``lock_timeout`` corto detecta antes los deadlocks del banco
    ingenuo, pero con mucha contención también declara "deadlock" a una espera
    que solo era larga. Si un hilo no termina en ``join_timeout`` se lanza
    ``LabTimeout``.
    """
    if threads < 1:
        raise ValueError("threads must be >= 1")
    bank: Bank = make_bank(strategy, window=window, lock_timeout=lock_timeout)
    names = [f"c{i}" for i in range(accounts)]
    for name in names:
        bank.open(name, initial_balance)
    base = seed * 1_000_003 + trial * 10_007 + threads * 101
    plans = [
        _plan(random.Random(base + worker), names, transfers_per_thread, max_amount)
        for worker in range(threads)
    ]
    counts = [[0, 0] for _ in range(threads)]
    start = threading.Barrier(threads + 1)

    def work(index: int) -> None:
        rejected = deadlocks = 0
        start.wait(join_timeout)
        for source, target, amount in plans[index]:
            try:
                bank.transfer(source, target, amount)
            except InsufficientFunds:
                rejected += 1
            except DeadlockDetected:
                deadlocks += 1
        counts[index] = [rejected, deadlocks]

    workers = [
        threading.Thread(target=work, args=(i,), name=f"{strategy}-{i}", daemon=True) for i in range(threads)
    ]
    elapsed = _run_timed(workers, start, join_timeout, f"{strategy} with {threads} threads")
    final = bank.accounts()
    attempted = threads * transfers_per_thread
    expected = accounts * initial_balance
    return TrialResult(
        strategy=strategy,
        threads=threads,
        trial=trial,
        seed=seed,
        window=window if strategy == "unsafe" else 0.0,
        transfers=attempted,
        applied=bank.transfers_applied,
        rejected=sum(c[0] for c in counts),
        deadlocks=sum(c[1] for c in counts),
        expected_total=expected,
        final_total=sum(final.values()),
        money_error=sum(final.values()) - expected,
        lost_updates=getattr(bank, "stale_writes", 0),
        negative_writes=getattr(bank, "negative_writes", 0),
        negative_accounts=sum(1 for v in final.values() if v < 0),
        min_balance=min(final.values()),
        elapsed=elapsed,
        transfers_per_second=attempted / elapsed if elapsed > 0 else float("inf"),
    )


def run_experiment(
    strategies: Iterable[str] = tuple(STRATEGIES),
    thread_counts: Iterable[int] = (1, 2, 4, 8),
    trials: int = 3,
    *,
    seed: int = 0,
    progress: Callable[[TrialResult], None] | None = None,
    **options: float,
) -> list[TrialResult]:
    """Todos los ensayos de la grilla estrategia × hilos × ensayo, como lista de resultados.

    Para un mismo (hilos, ensayo) todas las estrategias reciben los mismos
    planes de transferencias, así las diferencias vienen solo del lock.
    ``options`` se pasan a ``run_trial`` (``transfers_per_thread``, ``window``...).
    """
    results: list[TrialResult] = []
    counts = list(thread_counts)
    for strategy in strategies:
        for threads in counts:
            for trial in range(trials):
                result = run_trial(
                    strategy,
                    threads,
                    seed=seed,
                    trial=trial,
                    **options,  # type: ignore[arg-type]
                )
                results.append(result)
                if progress is not None:
                    progress(result)
    return results


def summarize(results: Iterable[TrialResult]) -> dict[tuple[str, int], dict[str, float]]:
    """Promedios por (estrategia, hilos): transferencias/s, error de dinero y conteos."""
    groups: dict[tuple[str, int], list[TrialResult]] = {}
    for result in results:
        groups.setdefault((result.strategy, result.threads), []).append(result)
    summary: dict[tuple[str, int], dict[str, float]] = {}
    for key, group in groups.items():
        n = len(group)
        summary[key] = {
            "trials": n,
            "transfers_per_second": sum(r.transfers_per_second for r in group) / n,
            "mean_money_error": sum(r.money_error for r in group) / n,
            "mean_abs_money_error": sum(abs(r.money_error) for r in group) / n,
            "broken_trials": sum(1 for r in group if r.money_error or r.negative_accounts),
            "lost_updates": sum(r.lost_updates for r in group) / n,
            "deadlocks": sum(r.deadlocks for r in group) / n,
        }
    return summary


class _NoLock:
    """Sustituto de ``threading.Lock`` que no sincroniza nada (solo para medir su costo)."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return True

    def release(self) -> None:
        return None

    def __enter__(self) -> bool:
        return True

    def __exit__(self, *exc: object) -> None:
        return None


class _BankWithoutLock(Bank):
    """``Bank`` con exactamente su código, pero con el lock reemplazado por uno que no hace nada.

    Comparado con ``Bank`` aísla el costo del lock: el resto del código es el
    mismo. No es un banco seguro (pierde actualizaciones con varios hilos); solo
    sirve como referencia de rendimiento.
    """

    def __init__(self) -> None:
        super().__init__(lock=_NoLock())


THROUGHPUT_STRATEGIES: dict[str, str] = {
    "bank-nolock": "Bank sin lock (mismo código)",
    "coarse": "Bank: un lock para todo",
    "unsafe": "por pasos, sin lock",
    "ordered": "por pasos, lock por cuenta ordenado",
}
"""Estrategias que compara ``measure_bank_throughput`` y su nombre en castellano."""


def _throughput_bank(strategy: str) -> Bank:
    if strategy == "bank-nolock":
        return _BankWithoutLock()
    return make_bank(strategy)


@dataclass(frozen=True, slots=True)
class ThroughputPoint:
    """Un punto de la figura de rendimiento: ``samples`` transferencias/s, una por repetición."""

    strategy: str
    threads: int
    operations: int
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        ordered = sorted(self.samples)
        middle = len(ordered) // 2
        if len(ordered) % 2:
            return ordered[middle]
        return (ordered[middle - 1] + ordered[middle]) / 2

    @property
    def minimum(self) -> float:
        return min(self.samples)

    @property
    def maximum(self) -> float:
        return max(self.samples)


def _timed_run(bank: Bank, plans: Sequence[Sequence[tuple[str, str, int]]], join_timeout: float) -> float:
    """Ejecuta un plan por hilo contra ``bank`` desde una barrera; devuelve los segundos."""
    threads = len(plans)
    start = threading.Barrier(threads + 1)

    def work(plan: Sequence[tuple[str, str, int]]) -> None:
        start.wait(join_timeout)
        transfer = bank.transfer
        for source, target, amount in plan:
            try:
                transfer(source, target, amount)
            except (InsufficientFunds, DeadlockDetected):
                pass

    workers = [threading.Thread(target=work, args=(plan,), daemon=True) for plan in plans]
    return _run_timed(workers, start, join_timeout, f"{type(bank).__name__} with {threads} threads")


def measure_bank_throughput(
    strategies: Iterable[str] = tuple(THROUGHPUT_STRATEGIES),
    thread_counts: Iterable[int] = (1, 2, 4, 8),
    *,
    operations: int = 100_000,
    repeats: int = 5,
    warmup: int = 10_000,
    accounts: int = 6,
    initial_balance: int = 1_000,
    max_amount: int = 400,
    seed: int = 0,
    join_timeout: float = 120.0,
) -> list[ThroughputPoint]:
    """Transferencias por segundo de cada estrategia según el número de hilos.

    Cada punto reparte ``operations`` transferencias entre los hilos (el mismo
    trabajo total para 1 o para 8 hilos) y se repite ``repeats`` veces con un
    banco nuevo cada vez. Antes de medir, cada estrategia hace ``warmup``
    transferencias que se descartan. En cada repetición las estrategias se
    turnan en orden rotado, para que una perturbación de la máquina no
    favorezca siempre a la misma. Los planes (origen, destino, monto) se
    generan una vez por número de hilos, fuera del tiempo medido, y son los
    mismos para todas las estrategias.
    """
    if operations < 1 or repeats < 1:
        raise ValueError("operations and repeats must be >= 1")
    names = [f"c{i}" for i in range(accounts)]
    chosen = list(strategies)
    points: list[ThroughputPoint] = []
    for threads in thread_counts:
        if threads < 1:
            raise ValueError("threads must be >= 1")
        per_thread = -(-operations // threads)
        plans = [
            _plan(random.Random(seed * 1_000_003 + threads * 101 + worker), names, per_thread, max_amount)
            for worker in range(threads)
        ]
        samples: dict[str, list[float]] = {strategy: [] for strategy in chosen}
        for round_ in range(repeats + (1 if warmup > 0 else 0)):
            warming = warmup > 0 and round_ == 0
            order = chosen[round_ % len(chosen) :] + chosen[: round_ % len(chosen)]
            for strategy in order:
                bank = _throughput_bank(strategy)
                for name in names:
                    bank.open(name, initial_balance)
                if warming:
                    share = -(-warmup // threads)
                    _timed_run(bank, [plan[:share] for plan in plans], join_timeout)
                    continue
                elapsed = _timed_run(bank, plans, join_timeout)
                samples[strategy].append(threads * per_thread / elapsed if elapsed > 0 else float("inf"))
        points.extend(
            ThroughputPoint(strategy, threads, threads * per_thread, tuple(samples[strategy]))
            for strategy in chosen
        )
    return points


def _overlap(a: ThroughputPoint, b: ThroughputPoint) -> bool:
    """¿Se tocan los rangos mínimo–máximo? Entonces la diferencia está dentro del ruido."""
    return a.minimum <= b.maximum and b.minimum <= a.maximum


def _compare(a: ThroughputPoint, b: ThroughputPoint) -> str:
    """«x veces más rápido», «x veces más lento» o «dentro del ruido» (de ``a`` respecto de ``b``)."""
    ratio = a.median / b.median if b.median else float("inf")
    text = f"{ratio:.2f}".replace(".", ",")
    if _overlap(a, b):
        return f"razón de medianas {text}, dentro del ruido (los rangos se superponen)"
    return f"razón de medianas {text}, " + ("más rápido" if ratio > 1 else "más lento")


def throughput_findings(points: Sequence[ThroughputPoint]) -> list[str]:
    """Frases en castellano que describen ``points`` tal como salieron (para el cuaderno y el informe).

    Las frases se arman con las medianas y con la superposición de los rangos
    mínimo–máximo; nada se afirma sin que la medición lo muestre.
    """
    by = {(p.strategy, p.threads): p for p in points}
    threads = sorted({p.threads for p in points})
    found: list[str] = []
    low, high = threads[0], threads[-1]
    if ("bank-nolock", low) in by and ("coarse", low) in by:
        found.append(
            f"Costo del lock con {low} hilo: `Bank` con lock frente al mismo código sin lock, "
            + _compare(by[("coarse", low)], by[("bank-nolock", low)])
            + "."
        )
    if ("bank-nolock", high) in by and ("coarse", high) in by:
        found.append(
            f"Con {high} hilos: `Bank` con lock frente a sin lock, "
            + _compare(by[("coarse", high)], by[("bank-nolock", high)])
            + "."
        )
    if ("ordered", high) in by and ("unsafe", high) in by:
        found.append(
            f"Locks por cuenta (por pasos) frente al mismo código sin lock, con {high} hilos: "
            + _compare(by[("ordered", high)], by[("unsafe", high)])
            + "."
        )
    gains = []
    for strategy in THROUGHPUT_STRATEGIES:
        if (strategy, low) not in by:
            continue
        best = max((by[(strategy, t)] for t in threads if (strategy, t) in by), key=lambda p: p.median)
        gains.append(best.median / by[(strategy, low)].median)
    if gains:
        top = f"{max(gains):.2f}".replace(".", ",")
        verdict = (
            "más hilos no multiplican el rendimiento"
            if max(gains) < 1.5
            else "alguna estrategia mejora con más hilos"
        )
        found.append(
            f"Escalamiento: la mejor mediana de cada estrategia es a lo más {top} veces la de {low} hilo; "
            f"{verdict}."
        )
    return found


def _is_funds_line(line: str) -> bool:
    return proto.parse_funds_line(line) is not None


def _is_transfer_outcome(line: str) -> bool:
    return proto.parse_transfer_sent_line(line) is not None or line == proto.INSUFFICIENT_FUNDS


@dataclass(frozen=True)
class SocketDemoResult:
    """La demostración por sockets: lo que cada usuario ve con ``:funds`` al final."""

    label: str
    clients: int
    sent: int
    confirmed: int
    rejected: int
    expected_total: int
    reported: dict[str, int]
    bank_total: int
    lost_updates: int
    elapsed: float

    @property
    def reported_total(self) -> int:
        return sum(self.reported.values())

    @property
    def money_error(self) -> int:
        return self.reported_total - self.expected_total


def run_socket_demo(
    bank: Bank | None = None,
    *,
    label: str = "",
    clients: int = 6,
    transfers_per_client: int = 10,
    balance: int = 1_000,
    timeout: float = 20.0,
) -> SocketDemoResult:
    """Un servidor real en 127.0.0.1 y ``clients`` clientes en proceso transfiriendo en anillo.

    El cliente ``i`` envía de una vez todas sus transferencias a ``i + 1`` (con
    montos distintos por cliente, para que las pérdidas no se compensen por
    casualidad). Cada cuenta recibe así débitos de su dueño y abonos de su
    vecino en hilos distintos del servidor: sin lock, se pisan. Cuando todos
    recibieron sus confirmaciones, cada uno pregunta ``:funds`` y se suma lo
    que el servidor le dice a cada usuario. ``bank=None`` usa el banco normal.
    """
    with ChatServer("127.0.0.1", 0, bank=bank, console=None) as server:
        names = [f"user{i}" for i in range(clients)]
        members: list[ChatClient] = []
        try:
            for name in names:
                members.append(ChatClient.join(server.address, name, balance, timeout=timeout))
            began = time.perf_counter()
            for i, member in enumerate(members):
                target = names[(i + 1) % clients]
                for _ in range(transfers_per_client):
                    member.send(f":t - {target} - {i + 3}")
            outcomes: list[str] = []
            for member in members:
                for _ in range(transfers_per_client):
                    outcomes.append(member.expect(_is_transfer_outcome, timeout))
            elapsed = time.perf_counter() - began
            reported: dict[str, int] = {}
            for name, member in zip(names, members, strict=False):
                member.send(":funds")
                funds = proto.parse_funds_line(member.expect(_is_funds_line, timeout))
                assert funds is not None
                reported[name] = funds
            bank_total = server.bank.total()
        finally:
            for member in members:
                try:
                    member.quit(timeout)
                except (OSError, TimeoutError):
                    member.close()
        return SocketDemoResult(
            label=label or type(server.bank).__name__,
            clients=clients,
            sent=clients * transfers_per_client,
            confirmed=sum(1 for line in outcomes if proto.parse_transfer_sent_line(line) is not None),
            rejected=sum(1 for line in outcomes if line == proto.INSUFFICIENT_FUNDS),
            expected_total=clients * balance,
            reported=reported,
            bank_total=bank_total,
            lost_updates=getattr(server.bank, "stale_writes", 0),
            elapsed=elapsed,
        )
