"""El protocolo del chat como funciones puras: sin sockets ni hilos.

Aquí vive todo lo que se puede probar sin red: los textos exactos que exige el
enunciado, el encuadre (framing) de líneas sobre un flujo de bytes, la
validación de identificadores y montos, el saneamiento de texto, los emojis y
el análisis de comandos. El servidor solo conecta estas piezas con los sockets.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple, cast

ENCODING: Final = "utf-8"
MAX_LINE_BYTES: Final = 4096
MAX_IDENTIFIER_LENGTH: Final = 24
MAX_AMOUNT: Final = 10**12
RESERVED_IDENTIFIERS: Final = frozenset({"server", "me", "client"})

WELCOME: Final = "Welcome to the best chat in the universe!"
GOODBYE: Final = "You have been disconnected from the best chat in the universe!"
SERVER_PREFIX: Final = "[SERVER] Client: "
ASK_IDENTIFIER: Final = SERVER_PREFIX + "What is your identifier?"
ASK_BALANCE: Final = SERVER_PREFIX + "What is your balance?"
INSUFFICIENT_FUNDS: Final = SERVER_PREFIX + "You don't have sufficient funds for the transaction."

EMOJIS: Final = {":smile": ":~)", ":angry": ">:(", ":confused": ":S"}

_IDENTIFIER_RE: Final = re.compile(r"[A-Za-z0-9_.\-]+")
_AMOUNT_RE: Final = re.compile(r"[0-9]+")
# Categorías Unicode que se eliminan al retransmitir: controles (Cc: ANSI,
# campana), formato (Cf: bidi como U+202E o U+061C, que invertirían el texto
# que ve otro, "trojan source"; los de ancho cero U+200B-U+200D, U+2060, U+FEFF,
# que esconden texto) y separadores de línea y párrafo (Zl, Zp: U+2028 y U+2029
# cortan la línea en algunas terminales y editores).
_STRIPPED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zl", "Zp"})


class ProtocolError(ValueError):
    """Entrada del cliente que no cumple el protocolo; el mensaje explica por qué."""


def server_line(text: str) -> str:
    """Antepone el prefijo ``[SERVER] Client: `` que usa el enunciado para avisos."""
    return SERVER_PREFIX + text


def balance_set_line(balance: int) -> str:
    """Confirmación del saldo inicial, con el formato exacto del enunciado."""
    return server_line(f"The balance of {balance} has been set to your account.")


def connected_line(identifier: str) -> str:
    """Aviso de conexión (consola del servidor y demás usuarios)."""
    return server_line(f"{identifier} connected!")


def disconnected_line(identifier: str) -> str:
    """Aviso de desconexión (consola del servidor y demás usuarios)."""
    return server_line(f"{identifier} disconnected!")


def chat_line(sender: str, text: str) -> str:
    """Mensaje público tal como lo ven los demás: ``<id>: texto``."""
    return f"{sender}: {text}"


def private_line(sender: str, text: str) -> str:
    """Mensaje privado tal como lo ve solo su destinatario."""
    return f"{sender} (private): {text}"


def funds_line(balance: int) -> str:
    """Respuesta a ``:funds``."""
    return server_line(f"You have {balance} dollars.")


def transfer_sent_line(amount: int, target: str, remaining: int) -> str:
    """Confirmación para quien transfiere."""
    return server_line(f"You transferred {amount} dollars to {target}. You have {remaining} dollars.")


def transfer_received_line(sender: str, amount: int) -> str:
    """Aviso para quien recibe una transferencia."""
    return server_line(f"{sender} transferred you {amount} dollars.")


def users_line(identifiers: list[str]) -> str:
    """Respuesta a ``:u``: una sola línea, fácil de leer y de procesar."""
    return server_line(f"Connected users: {', '.join(identifiers)}.")


# Las inversas de los formateadores: quien lee el protocolo (clientes, el
# verificador, los benchmarks, el laboratorio) reconoce las líneas con estas
# funciones en vez de copiar expresiones regulares. Devuelven ``None`` cuando la
# línea no es de ese tipo.
_ID: Final = r"(\S+)"
_NUMBER: Final = r"(-?[0-9]+)"
_FUNDS_RE: Final = re.compile(re.escape(SERVER_PREFIX) + r"You have " + _NUMBER + r" dollars\.")
_BALANCE_SET_RE: Final = re.compile(
    re.escape(SERVER_PREFIX) + r"The balance of " + _NUMBER + r" has been set to your account\."
)
_CONNECTED_RE: Final = re.compile(re.escape(SERVER_PREFIX) + _ID + r" connected!")
_DISCONNECTED_RE: Final = re.compile(re.escape(SERVER_PREFIX) + _ID + r" disconnected!")
_SENT_RE: Final = re.compile(
    re.escape(SERVER_PREFIX)
    + r"You transferred ([0-9]+) dollars to "
    + _ID
    + r"\. You have "
    + _NUMBER
    + r" dollars\."
)
_RECEIVED_RE: Final = re.compile(re.escape(SERVER_PREFIX) + _ID + r" transferred you ([0-9]+) dollars\.")
_USERS_RE: Final = re.compile(re.escape(SERVER_PREFIX) + r"Connected users: (.*)\.")
_PRIVATE_RE: Final = re.compile(_ID + r" \(private\): (.*)", re.DOTALL)
_CHAT_RE: Final = re.compile(r"(\S+?): (.*)", re.DOTALL)


def parse_funds_line(line: str) -> int | None:
    """Inversa de ``funds_line``: el saldo informado por ``:funds``."""
    match = _FUNDS_RE.fullmatch(line)
    return int(match.group(1)) if match else None


def parse_balance_set_line(line: str) -> int | None:
    """Inversa de ``balance_set_line``: el saldo inicial confirmado."""
    match = _BALANCE_SET_RE.fullmatch(line)
    return int(match.group(1)) if match else None


def is_balance_set_line(line: str) -> bool:
    """¿Es la confirmación del saldo? Con ella termina el saludo y el usuario ya está en el chat."""
    return parse_balance_set_line(line) is not None


def parse_connected_line(line: str) -> str | None:
    """Inversa de ``connected_line``: quién se conectó."""
    match = _CONNECTED_RE.fullmatch(line)
    return match.group(1) if match else None


def parse_disconnected_line(line: str) -> str | None:
    """Inversa de ``disconnected_line``: quién se desconectó."""
    match = _DISCONNECTED_RE.fullmatch(line)
    return match.group(1) if match else None


def parse_transfer_sent_line(line: str) -> tuple[int, str, int] | None:
    """Inversa de ``transfer_sent_line``: ``(monto, destinatario, saldo restante)``."""
    match = _SENT_RE.fullmatch(line)
    return (int(match.group(1)), match.group(2), int(match.group(3))) if match else None


def parse_transfer_received_line(line: str) -> tuple[str, int] | None:
    """Inversa de ``transfer_received_line``: ``(emisor, monto)``."""
    match = _RECEIVED_RE.fullmatch(line)
    return (match.group(1), int(match.group(2))) if match else None


def parse_users_line(line: str) -> list[str] | None:
    """Inversa de ``users_line``: los identificadores en el orden informado."""
    match = _USERS_RE.fullmatch(line)
    if match is None:
        return None
    return [name for name in match.group(1).split(", ") if name]


def parse_private_line(line: str) -> tuple[str, str] | None:
    """Inversa de ``private_line``: ``(emisor, texto)``."""
    match = _PRIVATE_RE.fullmatch(line)
    return (match.group(1), match.group(2)) if match else None


def parse_chat_line(line: str) -> tuple[str, str] | None:
    """Inversa de ``chat_line``: ``(emisor, texto)``; ``None`` para avisos del servidor y privados."""
    if line.startswith(SERVER_PREFIX) or line in (WELCOME, GOODBYE) or parse_private_line(line):
        return None
    match = _CHAT_RE.fullmatch(line)
    return (match.group(1), match.group(2)) if match else None


def validate_identifier(raw: str) -> str:
    """Devuelve el identificador si es válido; si no, ``ProtocolError`` con la razón."""
    identifier = raw.strip()
    if not identifier:
        raise ProtocolError("The identifier cannot be empty.")
    if len(identifier) > MAX_IDENTIFIER_LENGTH:
        raise ProtocolError(f"The identifier must have at most {MAX_IDENTIFIER_LENGTH} characters.")
    if not _IDENTIFIER_RE.fullmatch(identifier):
        raise ProtocolError("The identifier may only contain letters, digits, '_', '-' and '.'.")
    if identifier.casefold() in RESERVED_IDENTIFIERS:
        raise ProtocolError(f"The identifier '{identifier}' is reserved.")
    return identifier


def identifier_key(identifier: str) -> str:
    """Clave para comparar identificadores sin distinguir mayúsculas."""
    return identifier.casefold()


_FAST_DIGITS = len(str(MAX_AMOUNT))


def parse_amount(raw: str, *, allow_zero: bool, what: str = "amount") -> int:
    """Convierte dígitos ASCII en un entero acotado; cualquier otra cosa es un error claro.

    Se exige ``[0-9]+`` (``str.isdigit`` aceptaría "²" o dígitos árabes) y se
    limita la longitud antes de llamar a ``int`` para que un número enorme no
    cueste CPU ni choque con el límite de dígitos de Python.
    """
    if raw.isdigit() and raw.isascii() and len(raw) <= _FAST_DIGITS:
        # Camino rápido (el caso normal, miles por segundo en ráfagas de ``:t``):
        # dígitos ASCII sin espacios que caben de sobra; lo demás sigue abajo.
        value = int(raw)
        if value <= MAX_AMOUNT and (value or allow_zero):
            return value
    text = raw.strip()
    if not _AMOUNT_RE.fullmatch(text):
        kind = "a non-negative" if allow_zero else "a positive"
        raise ProtocolError(f"The {what} must be {kind} whole number of dollars, like 50000.")
    if len(text.lstrip("0")) > len(str(MAX_AMOUNT)) or int(text) > MAX_AMOUNT:
        raise ProtocolError(f"The {what} cannot be more than {MAX_AMOUNT} dollars.")
    value = int(text)
    if value == 0 and not allow_zero:
        raise ProtocolError(f"The {what} must be greater than 0.")
    return value


def sanitize(text: str) -> str:
    """Elimina controles, caracteres de formato (bidi, ancho cero) y separadores de línea.

    Los tabs pasan a espacio.

    Así ningún usuario puede mover el cursor, borrar líneas o cambiar colores en
    la terminal de otro con secuencias ANSI.
    """
    if text.isprintable():
        # Camino rápido: sin controles (Cc), formato (Cf, incluye bidi) ni tabs.
        return text
    out = []
    for ch in text:
        if ch == "\t":
            out.append(" ")
        elif unicodedata.category(ch) not in _STRIPPED_CATEGORIES:
            out.append(ch)
    return "".join(out)


def render_emojis(text: str) -> str:
    """Reemplaza los códigos de emoji que aparecen como palabras completas."""
    if ":" not in text:
        return text
    return " ".join(EMOJIS.get(word, word) for word in text.split(" "))


def plain_chat_block(lines: Sequence[str | ProtocolError], prefix: str) -> str | None:
    """Un lote entero de líneas de chat simples, ya difundidas, en un solo texto; ``None`` si no lo es.

    Una línea es simple si no tiene ``":"`` (no es comando ni emoji) y es
    imprimible (no hay nada que sanear): su difusión es ``prefix`` más la línea
    sin espacios en los extremos, y la que queda vacía no se envía. Retorna esas
    difusiones unidas por ``\\n`` (``""`` si todas quedaron vacías), o ``None``
    si alguna línea no es simple o hay un error de encuadre: entonces el lote
    va línea por línea. Todo se hace con funciones de C, sin un bucle de Python
    por línea: es el caso de una ráfaga, con mil líneas por ``recv``.
    """
    if set(map(type, lines)) != {str}:
        return None
    texts = cast("Sequence[str]", lines)
    if ":" in "".join(texts) or not all(map(str.isprintable, texts)):
        return None
    kept = list(filter(None, map(str.strip, texts)))
    return prefix + ("\n" + prefix).join(kept) if kept else ""


class Command(NamedTuple):
    """Una línea ya analizada.

    ``name`` es ``chat`` para mensajes normales, el nombre del comando (``q``,
    ``p``, ``u``, ``funds``, ``t``, ``h``) para comandos válidos, o ``error``
    cuando la línea es un comando mal formado (``error`` lleva la explicación).
    Una tupla con nombre (inmutable) porque se crea una por comando y así
    cuesta menos que una ``dataclass(frozen=True)``.
    """

    name: str
    args: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """Descripción de un comando: su uso y ayuda salen de la misma tabla que despacha."""

    name: str
    usage: str
    help: str
    pattern: re.Pattern[str]


_SEP = r"\s+-\s+"
COMMANDS: Final[dict[str, CommandSpec]] = {
    spec.name: spec
    for spec in (
        CommandSpec("q", ":q", "leave the chat", re.compile(r":q")),
        CommandSpec(
            "p",
            ":p - <Identifier> - <Message>",
            "send a private message",
            re.compile(r":p" + _SEP + r"(\S+)" + _SEP + r"(.*\S.*)"),
        ),
        CommandSpec("u", ":u", "list the connected users", re.compile(r":u")),
        CommandSpec("funds", ":funds", "show your balance", re.compile(r":funds")),
        CommandSpec(
            "t",
            ":t - <Identifier> - <Amount>",
            "transfer money to another user",
            re.compile(r":t" + _SEP + r"(\S+)" + _SEP + r"(\S+)"),
        ),
        CommandSpec("h", ":h", "show this help", re.compile(r":h")),
    )
}


def help_lines() -> list[str]:
    """Texto de ``:h``, generado desde la misma tabla de comandos y emojis."""
    lines = [server_line("Commands:")]
    width = max(len(spec.usage) for spec in COMMANDS.values())
    for spec in COMMANDS.values():
        lines.append(server_line(f"  {spec.usage.ljust(width)}  {spec.help}"))
    for code, face in EMOJIS.items():
        lines.append(server_line(f"  {code.ljust(width)}  send the emoji {face}"))
    lines.append(server_line("  Any other line is sent to everyone."))
    return lines


def might_be_command(line: str) -> bool:
    """Filtro barato: ``False`` asegura que la línea es un mensaje de chat.

    Evita analizar cada mensaje bajo ráfagas; si es ``True``, ``parse_line`` decide.
    """
    text = line.lstrip()
    return len(text) > 1 and text[0] == ":" and text[1].isascii() and text[1].isalpha()


_COMMAND_WORD_RE: Final = re.compile(r":([A-Za-z]+)")
# La forma de los argumentos de :p y :t (``:x - id - ...``), con o sin espacios.
_ARGUMENT_SHAPE_RE: Final = re.compile(r":[A-Za-z]+\s*-\s*\S+?\s*-.*", re.DOTALL)


def _attempt(name: str) -> Command:
    """Un intento de comando mal escrito: se explica, nunca se difunde."""
    spec = COMMANDS.get(name.casefold())
    if spec is None:
        return Command("error", error=f"Unknown command ':{name}'. Type :h to see the commands.")
    return Command("error", error=f"Usage: {spec.usage}")


_FAST_COMMANDS: Final = {f":{name} ": COMMANDS[name] for name in ("t", "p")}


_PLAIN_TRANSFER: Final = re.compile(rf":t - (\S+) - ([0-9]{{1,{_FAST_DIGITS}}})")


def parse_plain_transfer(line: str) -> tuple[str, int] | None:
    """``(destinatario, monto)`` si ``line`` es un ``:t`` en su forma exacta y válida.

    Es el caso de una ráfaga de transferencias (``:t - ana - 50``, un espacio a
    cada lado de los guiones, monto entre 1 y ``MAX_AMOUNT``): da lo mismo que
    ``parse_line`` seguido de ``parse_amount``, sin crear el ``Command``.
    ``None`` significa "use el camino general", no que la línea sea inválida.
    """
    found = _PLAIN_TRANSFER.fullmatch(line)
    if found is None:
        return None
    amount = int(found[2])
    if not 0 < amount <= MAX_AMOUNT:
        return None
    return found[1], amount


def parse_line(line: str) -> Command:
    """Clasifica una línea del chat: mensaje, comando válido o comando mal formado.

    La regla evita que un comando mal escrito llegue a todos (un ``:p`` con
    un error de tipeo es un secreto difundido): si la primera palabra empieza
    con el nombre de un comando (en cualquier caja) seguido de puntuación
    (``:p-ana-x``, ``:q!``, ``:funds?``), o la línea tiene la forma de los
    argumentos (``:P - ana - hola``), es un intento de comando y recibe su
    línea de uso. Siguen siendo mensajes las caras (``:)``, ``:~)``), los
    emojis (``:smile hola``) y las caras de una letra que no es un comando
    (``:D``, ``:S``, ``:c``, ``:P``). Una palabra de varias letras que no es un
    comando ni un emoji (``:fly``) recibe "Unknown command".
    """
    spec = _FAST_COMMANDS.get(line[:3])
    if spec is not None:
        # ``:t ``/``:p `` al inicio: la primera palabra es exactamente el comando,
        # así que se llega al mismo resultado que abajo sin clasificarla.
        found = spec.pattern.fullmatch(line.strip())
        if found is None:
            return Command("error", error=f"Usage: {spec.usage}")
        return Command(spec.name, found.groups())
    text = line.strip()
    first = text.split(maxsplit=1)[0] if text else ""
    match = _COMMAND_WORD_RE.match(first)
    if match is None or first in EMOJIS:
        return Command("chat", (line,))
    letters, rest = match.group(1), first[match.end() :]
    if not rest:
        spec = COMMANDS.get(letters)
        if spec is not None:
            found = spec.pattern.fullmatch(text)
            if found is None:
                return Command("error", error=f"Usage: {spec.usage}")
            return Command(spec.name, found.groups())
        if _ARGUMENT_SHAPE_RE.fullmatch(text):
            return _attempt(letters)
        if len(letters) == 1:
            return Command("chat", (line,))
        return _attempt(letters)
    if letters.casefold() in COMMANDS and not rest[0].isalnum():
        return _attempt(letters)
    return Command("chat", (line,))


class LineBuffer:
    """Encuadre de mensajes: convierte un flujo de bytes TCP en líneas de texto.

    TCP entrega bytes, no mensajes: un ``recv`` puede traer media línea o
    varias. Este objeto acumula bytes y devuelve las líneas completas
    (terminadas en ``\\n``, con o sin ``\\r``). Una línea de más de
    ``max_bytes`` produce un error y el resto se descarta hasta el próximo
    ``\\n``, para que un cliente no pueda hacer crecer la memoria sin límite.
    """

    def __init__(self, max_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buffer = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[str | ProtocolError]:
        """Agrega bytes y devuelve, en orden, líneas decodificadas o errores."""
        if not self._buffer and data.endswith(b"\n") and len(data) <= self.max_bytes and not self._discarding:
            # El caso de un cliente interactivo: el ``recv`` trae líneas enteras y nada quedaba
            # pendiente. Ninguna línea puede ser demasiado larga; basta decodificar y partir.
            try:
                text = data.decode(ENCODING)
            except UnicodeDecodeError:
                pass
            else:
                parts = text[:-1].split("\n")
                if "\r" in text:
                    parts = [line[:-1] if line.endswith("\r") else line for line in parts]
                lines: list[str | ProtocolError] = list(parts)
                return lines
        self._buffer += data
        out: list[str | ProtocolError] = []
        if b"\n" in data:
            end = self._buffer.rfind(b"\n")
            # Un solo decode y un solo split por recv: bajo ráfagas trae cientos de líneas.
            chunk = self._buffer[:end]
            del self._buffer[: end + 1]
            fast = self._split_decoded(chunk)
            if fast is not None:
                out = fast
            else:
                for raw in chunk.split(b"\n"):
                    if self._discarding:
                        self._discarding = False
                        continue
                    if raw.endswith(b"\r"):
                        raw = raw[:-1]
                    if len(raw) > self.max_bytes:
                        out.append(self._too_long())
                        continue
                    try:
                        out.append(raw.decode(ENCODING))
                    except UnicodeDecodeError:
                        out.append(ProtocolError("Your message was not valid UTF-8 and was ignored."))
        # Un ``\r`` final puede ser la mitad de un CRLF que llega en el próximo paquete.
        limit = self.max_bytes + (1 if self._buffer.endswith(b"\r") else 0)
        if len(self._buffer) > limit:
            if not self._discarding:
                out.append(self._too_long())
            self._discarding = True
            self._buffer.clear()
        return out

    def _split_decoded(self, chunk: bytearray) -> list[str | ProtocolError] | None:
        """Todas las líneas completas de un ``recv`` con un solo ``decode`` y un solo ``split``.

        Da lo mismo que decodificar línea por línea (``\\n`` nunca es parte de
        un carácter UTF-8 de varios bytes); ``None`` si hay que ir línea por
        línea: UTF-8 inválido, una línea quizá larga o un descarte en curso.
        """
        if self._discarding:
            return None
        try:
            text = chunk.decode(ENCODING)
        except UnicodeDecodeError:
            return None
        lines = text.split("\n")
        # Un carácter ocupa a lo más 4 bytes: más corta que esto, ninguna línea se pasa.
        if len(chunk) > self.max_bytes and max(map(len, lines)) * 4 > self.max_bytes:
            return None
        if "\r" in text:
            lines = [line[:-1] if line.endswith("\r") else line for line in lines]
        result: list[str | ProtocolError] = list(lines)
        return result

    def _too_long(self) -> ProtocolError:
        return ProtocolError(f"Your line was longer than {self.max_bytes} bytes and was ignored.")

    @property
    def pending(self) -> int:
        """Bytes recibidos que aún no forman una línea completa."""
        return len(self._buffer)
