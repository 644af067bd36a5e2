"""Los escenarios del verificador: uno por requisito del enunciado que se ve desde la red.

Cada escenario abre sus propios clientes (``Context``), hace lo que haría un
usuario y compara lo que llega: exacto donde el enunciado da el texto,
tolerante donde calla. Un escenario falla lanzando ``Failed`` con las líneas
vistas como evidencia; ``run`` los ejecuta todos y arma el informe.
"""

from __future__ import annotations

import random
import string
import time
from collections.abc import Callable
from dataclasses import dataclass

from chatlib import protocol as proto
from chatlib.check.context import (
    Context,
    Failed,
    Member,
    containing,
    discover,
    evidence,
    face_line,
    is_funds,
    names_joined,
    names_left,
)
from chatlib.check.report import Report, Result, Verdict
from chatlib.check.text import chat_sender, notice_subject
from chatlib.check.wire import Budget, BudgetExceeded, Settings, remaining

SIX = 6
MONEY_CLIENTS = 4
MONEY_TRANSFERS = 20
MONEY_BALANCE = 1000


def check_identifier(ctx: Context) -> str:
    """Requisito 2: identificadores únicos; uno repetido no entra al chat."""
    a = ctx.join("a", 100)
    b = ctx.join("b", 100)
    if ctx.dialect.assigned:
        ctx.ensure_names([a, b])
        if a.name == b.name:
            raise Failed(f"two clients got the same identifier {a.name!r}", evidence(a.link, b.link))
        return f"assigned from the address: {a.name} and {b.name}"
    assert a.requested is not None
    dup = ctx.connect("dup")
    if not dup.wait_lines(ctx.dialect.prompt_lines):
        raise Failed("dup did not receive the identifier question", evidence(dup))
    mark = a.link.mark()
    dup.send(a.requested)
    if dup.wait_for(lambda line: line == proto.ASK_BALANCE, 0, ctx.settings.settle) is not None:
        # Preguntó el saldo igual: quizá lo renombró. Falla si entra con el mismo identificador.
        asked = dup.mark()
        dup.send("1")
        confirmed = dup.wait_for(lambda line: line == proto.balance_set_line(1), asked)
        notice = a.link.wait_for(
            lambda line: notice_subject(line, "connected") is not None, mark, ctx.settings.settle
        )
        subject = notice_subject(notice, "connected") if notice is not None else None
        if subject is not None and a.is_named(subject):
            raise Failed(f"a second client joined as {a.requested!r}, already in use", evidence(dup, a.link))
        if confirmed is not None and subject is not None:
            return f"{a.requested!r} and {b.requested!r} accepted; a repeated one joined as {subject!r}"
        if confirmed is not None:
            raise Failed(
                f"a second client that answered {a.requested!r}, already in use, was let in",
                evidence(dup, a.link),
            )
    if dup.closed:
        return (
            f"{a.requested!r} and {b.requested!r} accepted; a repeated {a.requested!r} was refused and closed"
        )
    other = ctx.fresh("ck")
    mark = dup.mark()
    dup.send(other)
    if dup.wait_for(lambda line: line == proto.ASK_BALANCE, mark) is None:
        return f"{a.requested!r} and {b.requested!r} accepted; a repeated {a.requested!r} was refused"
    return (
        f"{a.requested!r} and {b.requested!r} accepted; a repeated one was refused, then {other!r} accepted"
    )


def check_balance(ctx: Context) -> str:
    """Requisito 5: pregunta y confirmación exactas, vistas solo por quien entra."""
    a = ctx.join("a", 1234)
    mark = a.link.mark()
    b = ctx.join("b", 4321)
    for member in (a, b):
        expected = proto.balance_set_line(member.balance)
        if expected not in member.link.lines:
            raise Failed(f"{member.label} did not receive the exact line '{expected}'", evidence(member.link))
    leaked = ctx.quiet_since(
        a.link, mark, lambda line: "What is your balance" in line or "has been set to your account" in line
    )
    if leaked:
        raise Failed(
            "a saw the balance question or confirmation of b, who was joining", [f"a <- {x}" for x in leaked]
        )
    return "exact question and confirmation, seen only by the joining user"


def check_six_clients(ctx: Context) -> str:
    """Requisito 1: seis clientes a la vez, y el mensaje de cada uno llega a los otros cinco."""
    members = [ctx.join(f"u{i + 1}", 100) for i in range(SIX)]
    tokens = [ctx.fresh("six-") for _ in members]
    for member, token in zip(members, tokens, strict=True):
        member.link.send(token)
    missing: list[str] = []
    until = time.monotonic() + ctx.settings.timeout
    for receiver in members:
        for sender, token in zip(members, tokens, strict=True):
            if sender is receiver:
                continue
            if receiver.link.wait_for(containing(token), 0, remaining(until)) is None:
                missing.append(f"{sender.label} -> {receiver.label}")
    if missing:
        raise Failed(
            f"{len(missing)} of {SIX * (SIX - 1)} messages did not arrive: {', '.join(missing[:6])}",
            evidence(*(m.link for m in members), count=4),
        )
    return f"{SIX} clients joined at once; each one's message reached the other {SIX - 1}"


def check_relay(ctx: Context) -> str:
    """Requisito 3: ``<id>: mensaje`` a los demás, nunca de vuelta a quien lo envía."""
    a, b, c = (ctx.join(label, 100) for label in "abc")
    token = ctx.fresh("hola-")
    mark = a.link.mark()
    a.link.send(token)
    line = ""
    for receiver in (b, c):
        line = ctx.expect(receiver.link, lambda text: token in text, f"a's message {token!r}")
        sender = chat_sender(line, token)
        if sender is None or not a.is_named(sender):
            raise Failed(
                f"{receiver.label} got {line!r}, expected exactly '{a.shown}: {token}'",
                evidence(receiver.link),
            )
    echoed = ctx.quiet_since(a.link, mark, lambda text: token in text)
    if echoed:
        raise Failed("the sender received its own message back", [f"a <- {x}" for x in echoed])
    return f"{line!r} reached the others, not the sender"


def check_notices(ctx: Context) -> str:
    """Requisito 4: avisos de conexión y desconexión a los demás, y la despedida a quien sale."""
    a = ctx.join("a", 100)
    b = ctx.join("b", 100)
    ctx.expect(a.link, lambda line: names_joined(line, b), f"'{proto.connected_line(b.shown)}'")
    mark = a.link.mark()
    b.link.send(":q")
    ctx.expect(b.link, lambda line: line == proto.GOODBYE, f"'{proto.GOODBYE}' after :q")
    ctx.expect(a.link, lambda line: names_left(line, b), f"'{proto.disconnected_line(b.shown)}'", mark)
    return "connected!/disconnected! notices to the others, goodbye line to the leaver"


def check_quit(ctx: Context) -> str:
    """Requisito 7, ``:q``: quien sale deja de recibir el chat."""
    a = ctx.join("a", 100)
    b = ctx.join("b", 100)
    b.link.send(":q")
    b.link.wait_for(lambda line: line == proto.GOODBYE)
    b.link.quiet()
    mark = b.link.mark()
    token = ctx.fresh("after-")
    a.link.send(token)
    late = ctx.quiet_since(b.link, mark, lambda line: token in line)
    if late:
        raise Failed("b still received the chat after :q", [f"b <- {x}" for x in late])
    how = "the server closed the connection" if b.link.closed else "the connection stayed open"
    return f"after :q the user gets no more messages ({how})"


def check_private(ctx: Context) -> str:
    """Requisito 7, ``:p``: solo el destinatario ve el mensaje."""
    a, b, c = (ctx.join(label, 100) for label in "abc")
    token = ctx.fresh("secret-")
    marks = {m.label: m.link.mark() for m in (a, c)}
    a.link.send(f":p - {ctx.ident(b)} - {token}")
    line = ctx.expect(b.link, lambda text: token in text, f"the private message {token!r}")
    for other in (c, a):
        leaked = ctx.quiet_since(other.link, marks[other.label], lambda text: token in text)
        if leaked:
            who = "the sender" if other is a else "a third user"
            raise Failed(f"{who} also saw the private message", [f"{other.label} <- {x}" for x in leaked])
    return f"only the target saw it: {line!r}"


def _listing(member: Member) -> Callable[[str], bool]:
    """Una línea que nombra al usuario y no es un aviso de conexión o desconexión."""

    def listed(line: str) -> bool:
        notice = notice_subject(line, "connected") or notice_subject(line, "disconnected")
        return notice is None and member.mentioned_in(line)

    return listed


def _listed(ctx: Context, asker: Member, present: list[Member]) -> list[str]:
    """Pide ``:u`` y devuelve las líneas de la respuesta; falla si falta alguien."""
    mark = asker.link.mark()
    asker.link.send(":u")
    until = time.monotonic() + ctx.settings.timeout
    missing = [m.shown for m in present if asker.link.wait_for(_listing(m), mark, remaining(until)) is None]
    asker.link.quiet()
    if missing:
        raise Failed(f":u did not list {', '.join(missing)}", evidence(asker.link))
    return [line for line in asker.link.since(mark) if notice_subject(line, "disconnected") is None]


def check_users(ctx: Context) -> str:
    """Requisito 7, ``:u``: lista a los conectados, y ya no a quien salió."""
    a, b, c = (ctx.join(label, 100) for label in "abc")
    _listed(ctx, a, [a, b, c])
    c.link.send(":q")
    c.link.wait_for(lambda line: line == proto.GOODBYE)
    a.link.wait_for(lambda line: names_left(line, c), 0, ctx.settings.settle)
    lines = _listed(ctx, a, [a, b])
    stale = [line for line in lines if _listing(c)(line)]
    if stale:
        raise Failed(f":u still lists {c.shown} after it left", [f"a <- {x}" for x in stale])
    return "lists every connected user, and not one that left"


def check_emojis(ctx: Context) -> str:
    """Requisito 7, emojis: ``:smile``, ``:angry`` y ``:confused`` llegan como caras."""
    a = ctx.join("a", 100)
    b = ctx.join("b", 100)
    mark = b.link.mark()
    for code in proto.EMOJIS:
        a.link.send(code)
    seen = []
    for code, face in proto.EMOJIS.items():
        line = ctx.expect(
            b.link,
            face_line(face),
            f"the face {face!r} for {code}",
            mark,
        )
        seen.append(line)
    return "others see " + ", ".join(repr(x) for x in seen)


def check_funds(ctx: Context) -> str:
    """Requisito 7, ``:funds``: el saldo exacto, solo para quien pregunta."""
    a = ctx.join("a", 2500)
    b = ctx.join("b", 700)
    mark = b.link.mark()
    value = ctx.funds(a)
    if value != 2500:
        raise Failed(f":funds said {value}, expected '{proto.funds_line(2500)}'", evidence(a.link))
    leaked = ctx.quiet_since(b.link, mark, lambda line: "2500" in line)
    if leaked:
        raise Failed("another user saw the balance", [f"b <- {x}" for x in leaked])
    return f"'{proto.funds_line(2500)}', only to the asker"


def check_transfer(ctx: Context) -> str:
    """Requisitos 6 y 7, ``:t``: mueve el dinero, rechaza sobregiros con la línea exacta, nunca negativo."""
    a = ctx.join("a", 1000)
    b = ctx.join("b", 500)
    steps: list[tuple[Member, Member, str, int, int, bool]] = [
        (a, b, "300", 700, 800, False),
        (a, b, "700", 0, 1500, False),
        (a, b, "1", 0, 1500, True),
        (b, a, "2000", 0, 1500, True),
        (a, b, "-2000", 0, 1500, False),
    ]
    for source, target, amount, want_a, want_b, refused in steps:
        command = f":t - {ctx.ident(target)} - {amount}"
        mark = source.link.mark()
        source.link.send(command)
        if refused:
            ctx.expect(
                source.link,
                lambda line: line == proto.INSUFFICIENT_FUNDS,
                f"'{proto.INSUFFICIENT_FUNDS}' after {command!r}",
                mark,
            )
        got_a, got_b = ctx.funds(a), ctx.funds(b)
        if got_a < 0 or got_b < 0:
            raise Failed(
                f"a negative balance after {command!r}: a has {got_a}, b has {got_b}",
                evidence(a.link, b.link),
            )
        if (got_a, got_b) != (want_a, want_b):
            raise Failed(
                f"after {source.label} sent {command!r}: a has {got_a} and b {got_b}, "
                f"expected {want_a} and {want_b}",
                evidence(a.link, b.link),
            )
    return (
        "moves the money, refuses overdrafts with the exact line, no negative balance (nor negative amounts)"
    )


def check_money(ctx: Context) -> str:
    """Requisito 8: transferencias concurrentes desde varios clientes conservan el dinero."""
    members = [ctx.join(f"m{i + 1}", MONEY_BALANCE) for i in range(MONEY_CLIENTS)]
    ctx.ensure_names(members)
    commands = {
        m.label: [f":t - {ctx.ident(members[(i + 1) % len(members)])} - 1"] * MONEY_TRANSFERS + [":funds"]
        for i, m in enumerate(members)
    }
    marks = {m.label: m.link.mark() for m in members}
    # Todas las ráfagas salen antes de leer respuestas: los hilos del servidor transfieren a la vez.
    if not ctx.dialect.paced:
        for m in members:
            m.link.send("\n".join(commands[m.label]))
    else:
        for step in range(MONEY_TRANSFERS + 1):
            for m in members:
                m.link.send(commands[m.label][step])
    patience = ctx.settings.timeout * 2 + MONEY_TRANSFERS * ctx.settings.pause
    seen: list[str] = []
    for m in members:
        # El :funds de cada ráfaga llega después de sus propias transferencias: es la barrera.
        line = m.link.wait_for(is_funds, marks[m.label], patience)
        if line is None:
            raise Failed(
                f"{m.label} got no :funds reply after its {MONEY_TRANSFERS} transfers", evidence(m.link)
            )
        seen.append(f"{m.label} <- {line}   (after its own {MONEY_TRANSFERS} transfers)")
    balances = {m.label: ctx.funds(m) for m in members}
    seen += [f"{label} <- {proto.funds_line(value)}   (at the end)" for label, value in balances.items()]
    total, expected = sum(balances.values()), MONEY_BALANCE * len(members)
    shown = ", ".join(f"{label}={value}" for label, value in balances.items())
    count = MONEY_TRANSFERS * len(members)
    if any(value < 0 for value in balances.values()):
        raise Failed(f"a negative balance after {count} concurrent transfers: {shown}", seen)
    if total != expected:
        raise Failed(
            f"money not conserved: {expected} dollars in total before {count} concurrent transfers, "
            f"{total} after ({shown}; each should be {MONEY_BALANCE})",
            seen,
        )
    if any(value != MONEY_BALANCE for value in balances.values()):
        raise Failed(
            f"the total is right but not the balances ({shown}; each should be {MONEY_BALANCE})", seen
        )
    return f"no loss in {count} concurrent transfers; a lock cannot be proven from the wire"


def check_threads(ctx: Context) -> str:
    """Requisito 8, su síntoma en la red: un cliente callado o que se corta no detiene a los demás."""
    silent = ctx.connect("silent")
    silent.wait_lines(1)
    try:
        a = ctx.join("a", 100)
        b = ctx.join("b", 100)
    except Failed as exc:
        raise Failed(f"while a client stayed silent in the handshake: {exc.detail}", exc.evidence) from exc
    token = ctx.fresh("busy-")
    a.link.send(token)
    ctx.expect(
        b.link, lambda line: token in line, "a's message while a client stayed silent in the handshake"
    )
    c = ctx.join("c", 100)
    c.link.close()
    silent.close()
    token = ctx.fresh("still-")
    a.link.send(token)
    ctx.expect(b.link, lambda line: token in line, "a's message after two clients vanished without :q")
    try:
        d = ctx.join("d", 100)
    except Failed as exc:
        raise Failed(f"after two clients vanished without :q: {exc.detail}", exc.evidence) from exc
    token = ctx.fresh("new-")
    d.link.send(token)
    ctx.expect(a.link, lambda line: token in line, "d's message after two clients vanished without :q")
    return (
        "a silent client and two that vanished without :q did not stop the others from joining and chatting"
    )


@dataclass(frozen=True, slots=True)
class Requirement:
    """Una fila de la tabla: el número del requisito en el enunciado y cómo se verifica."""

    key: str
    number: str
    title: str
    check: Callable[[Context], str] | None = None
    not_checkable: str = ""


REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement("six-clients", "1", "at least 6 clients at once", check_six_clients),
    Requirement("identifier", "2", "unique identifiers", check_identifier),
    Requirement("relay", "3", "messages shown to the others as <id>: msg", check_relay),
    Requirement(
        "me-prefix",
        "3",
        "'Me: msg' for one's own messages",
        not_checkable="printed by the user's own client; the server never sends it",
    ),
    Requirement("notices", "4", "connect/disconnect notices and goodbye", check_notices),
    Requirement(
        "server-console",
        "4",
        "notices on the server's terminal",
        not_checkable="printed on the server's own console, never sent over the network",
    ),
    Requirement("welcome", "5", "welcome line"),
    Requirement("balance", "5", "balance question and confirmation", check_balance),
    Requirement("transfer", "6, 7", ":t transfers, no overdraft, no negative", check_transfer),
    Requirement("quit", "7", ":q leaves the chat", check_quit),
    Requirement("private", "7", ":p private message", check_private),
    Requirement("users", "7", ":u lists the users", check_users),
    Requirement("emojis", "7", ":smile :angry :confused", check_emojis),
    Requirement("funds", "7", ":funds is private", check_funds),
    Requirement("money", "8", "concurrent transfers conserve money", check_money),
    Requirement("threads", "8", "a stuck or vanished client blocks nobody", check_threads),
    Requirement(
        "thread-code",
        "8",
        "one thread per connection in the code",
        not_checkable="a property of the source code; the row 'threads' checks its symptom on the wire",
    ),
)
KEYS: tuple[str, ...] = tuple(r.key for r in REQUIREMENTS)
# El orden de ejecución: los que cortan conexiones sin :q van al final, por si el servidor no lo soporta.
RUN_ORDER: tuple[str, ...] = (
    "welcome", "identifier", "balance", "six-clients", "relay", "notices", "quit", "private",
    "users", "emojis", "funds", "transfer", "money", "threads",
)  # fmt: skip


def _tag() -> str:
    return "".join(random.choices(string.ascii_lowercase, k=3))


def run(host: str, port: int, settings: Settings | None = None, only: list[str] | None = None) -> Report:
    """Verifica el servidor en ``host:port`` y devuelve el informe (no lo imprime)."""
    settings = settings or Settings()
    selected = [key for key in KEYS if only is None or key in only]
    budget = Budget(settings.max_connections)
    report = Report(target=f"{host}:{port}")
    tag = _tag()
    found = discover((host, port), settings, budget, tag)
    if found.dialect is not None:
        report.framing = found.dialect.describe_framing()
        report.identifiers = found.dialect.describe_identifiers()
    results: dict[str, Result] = {}
    for key in RUN_ORDER:
        req = next(r for r in REQUIREMENTS if r.key == key)
        if key not in selected:
            continue
        if key == "welcome":
            verdict = Verdict.PASS if found.welcome_ok else Verdict.FAIL
            results[key] = Result(
                key, req.number, req.title, verdict, found.welcome_detail, tuple(found.welcome_evidence)
            )
            continue
        assert req.check is not None
        if found.dialect is None:
            results[key] = Result(
                key, req.number, req.title, Verdict.FAIL, found.failure, tuple(found.evidence)
            )
            continue
        results[key] = _run_one(req, Context((host, port), settings, budget, found.dialect, tag + key[:2]))
    for req in REQUIREMENTS:
        if req.not_checkable and req.key in selected:
            results[req.key] = Result(
                req.key, req.number, req.title, Verdict.NOT_CHECKABLE, req.not_checkable
            )
    report.results = [results[key] for key in KEYS if key in results]
    report.connections = budget.used
    report.peak_connections = budget.peak
    return report


def _run_one(req: Requirement, ctx: Context) -> Result:
    """Un escenario con sus clientes; cualquier fallo de red también es un FAIL con evidencia."""
    assert req.check is not None
    try:
        detail = req.check(ctx)
    except Failed as exc:
        return Result(req.key, req.number, req.title, Verdict.FAIL, exc.detail, exc.evidence)
    except BudgetExceeded as exc:
        return Result(req.key, req.number, req.title, Verdict.FAIL, str(exc))
    except OSError as exc:
        detail = f"connection error: {exc.strerror or exc}"
        return Result(req.key, req.number, req.title, Verdict.FAIL, detail, tuple(evidence(*ctx.links)))
    finally:
        ctx.cleanup()
    return Result(req.key, req.number, req.title, Verdict.PASS, detail)
