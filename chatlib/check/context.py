"""Cómo habla el verificador con un servidor desconocido: descubrimiento, clientes y esperas.

Una conexión de prueba descubre el encuadre y la forma de los identificadores
(``discover``); después cada escenario usa un ``Context``: sus clientes, las
acciones de un usuario (entrar, preguntar ``:funds``, salir) y los fallos con
evidencia (``Failed``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from chatlib import protocol as proto
from chatlib.check.text import Framing, chat_sender, notice_subject, number_pattern, word_pattern
from chatlib.check.wire import Address, Budget, BudgetExceeded, Hub, Link, Settings


class Failed(Exception):
    """Un requisito no se cumple; ``evidence`` son las líneas que lo muestran."""

    def __init__(self, detail: str, evidence: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.evidence = tuple(evidence)


@dataclass(slots=True)
class Dialect:
    """Lo que la conexión de prueba descubrió sobre cómo habla el servidor."""

    framing_in: Framing
    framing_out: Framing
    assigned: bool
    prompt_lines: int
    crlf: bool
    exact_confirmation: bool = True
    paced: bool = False
    connect_notices: bool | None = None

    def describe_framing(self) -> str:
        out = {
            "lines": "lines ending in \\r\\n" if self.crlf else "lines ending in \\n",
            "bare": "one message per send(), no \\n",
        }
        inp = {
            "lines": "lines ending in \\n",
            "bare": "one message per send(), no \\n, paused between messages",
        }
        sent = inp[self.framing_in]
        if self.paced and self.framing_in == "lines":
            sent += ", one per write, paused (the server reads one message per recv())"
        return f"server sends {out[self.framing_out]}; the checker sends {sent}"

    def describe_identifiers(self) -> str:
        if self.assigned:
            return "assigned by the server (from the address, as with getpeername()); none is asked"
        return "asked by the server; the checker answers with its own unique identifiers"


@dataclass(slots=True)
class Member:
    """Un cliente del verificador que ya entró al chat."""

    link: Link
    balance: int
    requested: str | None
    name: str | None = None

    @property
    def label(self) -> str:
        return self.link.label

    @property
    def shown(self) -> str:
        """El identificador para los mensajes de error."""
        return self.name or self.requested or f"<the identifier with port {self.link.port}>"

    def is_named(self, text: str) -> bool:
        """¿``text`` es el identificador de este cliente? Con ids asignados basta su puerto.

        ``<ana>`` también vale: el enunciado escribe ``<Identifier>: Message`` y
        hay quien toma los signos al pie de la letra.
        """
        if self.requested is not None:
            return text in (self.requested, f"<{self.requested}>")
        return number_pattern(self.link.port).search(text) is not None

    def mentioned_in(self, line: str) -> bool:
        """¿La línea nombra a este cliente (como palabra entera)?"""
        if self.requested is not None:
            return word_pattern(self.requested).search(line) is not None
        return number_pattern(self.link.port).search(line) is not None


def evidence(*links: Link, count: int = 8) -> list[str]:
    return [line for link in links for line in link.tail(count)]


class Context:
    """Los clientes de un escenario y las acciones de usuario que los escenarios combinan."""

    def __init__(
        self, address: Address, settings: Settings, budget: Budget, dialect: Dialect, tag: str
    ) -> None:
        self.address = address
        self.settings = settings
        self.budget = budget
        self.dialect = dialect
        self.tag = tag
        self.hub = Hub()
        self.links: list[Link] = []
        self.members: list[Member] = []
        self._counter = 0

    def fresh(self, prefix: str = "") -> str:
        """Un texto único en esta ejecución: identificadores y mensajes que no se confunden."""
        self._counter += 1
        return f"{prefix}{self.tag}{self._counter}"

    def connect(self, label: str) -> Link:
        try:
            link = Link(
                self.address,
                label,
                self.settings,
                self.budget,
                self.dialect.framing_in,
                self.dialect.framing_out,
                self.hub,
                self.dialect.paced,
            )
        except OSError as exc:
            raise Failed(f"{label} cannot connect: {exc.strerror or exc}") from exc
        self.links.append(link)
        return link

    def expect(
        self, link: Link, predicate: Callable[[str], bool], what: str, since: int = 0, *others: Link
    ) -> str:
        """La línea esperada, o un fallo que dice qué faltó y muestra lo que sí llegó."""
        line = link.wait_for(predicate, since, self.settings.timeout)
        if line is None:
            why = f" ({link.close_reason})" if link.closed else ""
            raise Failed(
                f"{link.label} did not receive {what} within {self.settings.timeout:g} s{why}",
                evidence(link, *others),
            )
        return line

    def join(self, label: str, balance: int) -> Member:
        """Conectar, identificarse (si se pregunta), dar el saldo y esperar la confirmación."""
        link = self.connect(label)
        requested = None
        if not self.dialect.assigned:
            requested = self.fresh("ck")
            if not link.wait_lines(self.dialect.prompt_lines, self.settings.timeout):
                raise Failed(f"{label} did not receive the greeting and identifier question", evidence(link))
            link.send(requested)
        self.expect(link, lambda line: line == proto.ASK_BALANCE, f"the question '{proto.ASK_BALANCE}'")
        asked = link.mark()
        link.send(str(balance), answered=True)
        # Si la prueba ya vio otra confirmación, basta una línea con el monto (la fila balance falla).
        expected = proto.balance_set_line(balance)
        amount = number_pattern(balance)
        confirmed = (
            (lambda line: line == expected)
            if self.dialect.exact_confirmation
            else (lambda line: amount.search(line) is not None)
        )
        if link.wait_for(confirmed, asked) is None and link.closed:
            raise Failed(
                f"{label} was disconnected after giving its balance ({link.close_reason})", evidence(link)
            )
        member = Member(link, balance, requested, requested)
        self._sync(member)
        self.members.append(member)
        return member

    def _sync(self, member: Member) -> None:
        """Espera a que el anterior vea llegar al nuevo; así el nuevo ya es miembro.

        Con ids asignados, el aviso de conexión es también donde se aprende el
        identificador que el servidor le dio. Si el servidor no avisa, se espera
        una vez el plazo completo y después solo un silencio corto.
        """
        if not self.members:
            return
        previous = self.members[-1].link
        wait = self.settings.timeout if self.dialect.connect_notices is not False else self.settings.settle
        line = previous.wait_for(lambda text: names_joined(text, member), 0, wait)
        if line is not None:
            self.dialect.connect_notices = True
            member.name = member.name or notice_subject(line, "connected")
        elif self.dialect.connect_notices is None:
            self.dialect.connect_notices = False

    def ensure_names(self, members: list[Member]) -> None:
        """Con ids asignados, aprende el identificador exacto de cada uno (avisos o un mensaje)."""
        for member in members:
            if member.name is not None:
                continue
            others = [m for m in self.members if m is not member]
            for other in others:
                for line in other.link.lines:
                    subject = notice_subject(line, "connected")
                    if subject is not None and member.is_named(subject):
                        member.name = subject
            if member.name is None and others:
                token = self.fresh("whoami-")
                mark = others[0].link.mark()
                member.link.send(token)
                reply = others[0].link.wait_for(chat_of(token), mark)
                sender = chat_sender(reply, token) if reply is not None else None
                if sender is not None and member.is_named(sender):
                    member.name = sender
            if member.name is None:
                raise Failed(
                    f"cannot learn the identifier given to {member.label} (port {member.link.port})",
                    evidence(member.link, *(m.link for m in others)),
                )

    def ident(self, member: Member) -> str:
        """El identificador para escribir en un comando (``:p``, ``:t``)."""
        self.ensure_names([member])
        assert member.name is not None
        return member.name

    def funds(self, member: Member) -> int:
        """Pregunta ``:funds`` y lee el saldo de la respuesta exacta del enunciado."""
        mark = member.link.mark()
        member.link.send(":funds")
        line = self.expect(
            member.link,
            lambda text: proto.parse_funds_line(text) is not None,
            "a 'You have N dollars.' reply to :funds",
            mark,
        )
        value = proto.parse_funds_line(line)
        assert value is not None
        return value

    def quiet_since(self, link: Link, mark: int, unwanted: Callable[[str], bool]) -> list[str]:
        """Escucha un silencio corto y devuelve las líneas que no debieron llegar."""
        link.listen()
        return [line for line in link.since(mark) if unwanted(line)]

    def cleanup(self) -> None:
        """Cada miembro sale con ``:q`` y se espera el cierre un momento: un servidor frágil no se cae."""
        for member in self.members:
            if not member.link.closed:
                member.link.send(":q")
        for link in self.links:
            link.wait_for(lambda _line: False, link.mark(), self.settings.settle)
            link.close()


def is_funds(line: str) -> bool:
    """La respuesta exacta a ``:funds``: ``[SERVER] Client: You have N dollars.``"""
    return proto.parse_funds_line(line) is not None


def containing(token: str) -> Callable[[str], bool]:
    """Cualquier línea que traiga el texto único ``token``, sea cual sea su formato."""
    return lambda line: token in line


def chat_of(token: str) -> Callable[[str], bool]:
    """Una línea ``<id>: token`` de cualquier emisor."""
    return lambda line: chat_sender(line, token) is not None


def face_line(face: str) -> Callable[[str], bool]:
    """Un mensaje (no un aviso del servidor) que trae la cara."""
    return lambda line: face in line and not line.startswith(proto.SERVER_PREFIX)


def names_joined(line: str, member: Member) -> bool:
    """¿Es el aviso exacto de que ``member`` se conectó?"""
    subject = notice_subject(line, "connected")
    return subject is not None and member.is_named(subject)


def names_left(line: str, member: Member) -> bool:
    """¿Es el aviso exacto de que ``member`` se desconectó?"""
    subject = notice_subject(line, "disconnected")
    return subject is not None and member.is_named(subject)


@dataclass(slots=True)
class Discovery:
    """El resultado de la conexión de prueba."""

    dialect: Dialect | None
    welcome_ok: bool
    welcome_detail: str
    welcome_evidence: list[str] = field(default_factory=list)
    failure: str = ""
    evidence: list[str] = field(default_factory=list)


def discover(address: Address, settings: Settings, budget: Budget, tag: str) -> Discovery:
    """Con una conexión de prueba: encuadre, forma de los identificadores y la bienvenida."""
    try:
        probe = Link(address, "probe", settings, budget, "lines", None)
    except OSError as exc:
        reason = f"cannot connect: {exc.strerror or exc}"
        return Discovery(None, False, reason, failure=reason)
    links = [probe]
    try:
        framing_out = probe.detect()
        if framing_out is None:
            why = probe.close_reason if probe.closed else f"it stayed silent for {settings.timeout:g} s"
            reason = f"the server sent nothing after the connection was accepted ({why})"
            return Discovery(None, False, reason, probe.tail(), reason, probe.tail())
        probe.quiet()
        greeting = list(probe.lines)
        assigned = proto.ASK_BALANCE in greeting
        before = greeting[: greeting.index(proto.ASK_BALANCE)] if assigned else greeting
        ok = proto.WELCOME in before
        detail = f"'{proto.WELCOME}'" if ok else f"no exact '{proto.WELCOME}' before the questions"
        shown = [] if ok else probe.tail()
        prompt_lines = len(before) if not assigned else 0
        other: Framing = "bare" if framing_out == "lines" else "lines"
        for framing_in in (framing_out, other):
            link = probe
            if framing_in != framing_out:
                try:
                    link = Link(address, "probe2", settings, budget, framing_in, framing_out)
                except (OSError, BudgetExceeded):
                    break
                links.append(link)
                link.wait_lines(len(greeting))
                link.quiet()
            if _handshake(link, assigned, tag):
                exact = proto.balance_set_line(100) in link.lines
                paced = framing_in == "bare" or not _reads_lines(link)
                dialect = Dialect(
                    framing_in, framing_out, assigned, prompt_lines, probe.saw_crlf, exact, paced
                )
                return Discovery(dialect, ok, detail, shown)
        reason = "could not join: " + (
            "no confirmation after giving the balance"
            if assigned
            else "no balance question after answering the identifier"
        )
        reason += " (tried lines ending in \\n and bare writes)"
        return Discovery(None, ok, detail, shown, reason, evidence(*links))
    finally:
        for link in links:
            if not link.closed:
                link.send(":q")
            link.close()


def _handshake(link: Link, assigned: bool, tag: str) -> bool:
    """Responde el saludo; ``True`` si el servidor entendió (pregunta el saldo, lo confirma)."""
    if not assigned:
        mark = link.mark()
        link.send(f"ck{tag}0{'b' if link.label.endswith('2') else 'a'}")
        if link.wait_for(lambda line: line == proto.ASK_BALANCE, mark) is None:
            return False
    mark = link.mark()
    link.send("100")
    amount = number_pattern(100)
    return link.wait_for(lambda line: amount.search(line) is not None, mark) is not None


def _reads_lines(link: Link) -> bool:
    """¿El servidor separa las líneas que llegan juntas? Dos ``:funds`` en una sola escritura.

    Muchos servidores de alumnos tratan cada ``recv`` como un mensaje aunque
    respondan con ``\\n``; a ellos el verificador les escribe una línea por vez.
    """
    mark = link.mark()
    link.send(":funds\n:funds")
    first = link.wait_for(is_funds, mark)
    if first is None:
        return False
    return link.wait_for(is_funds, link.lines.index(first, mark) + 1) is not None
