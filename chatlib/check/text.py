"""Funciones puras del verificador: encuadre tolerante y reconocimiento de líneas.

Nada aquí toca sockets: el encuadre de lo recibido y la pregunta "¿esta línea
nombra a este usuario?" se prueban sin red. Los textos exactos vienen de
``chatlib.protocol``; aquí solo se agrega la tolerancia que el enunciado permite.
"""

from __future__ import annotations

import codecs
import re
from typing import Final, Literal

from chatlib import protocol as proto

Framing = Literal["lines", "bare"]

_GLUE_RE: Final = re.compile(
    "("
    + "|".join(re.escape(s) for s in (proto.WELCOME, proto.GOODBYE))
    + ")|(?="
    + re.escape(proto.SERVER_PREFIX)
    + ")"
)
_NOTICE_RE: Final = re.compile(re.escape(proto.SERVER_PREFIX) + r"(.+) (connected|disconnected)!")


def split_glued(text: str) -> list[str]:
    """Separa mensajes pegados por un servidor sin ``\\n``.

    Dos ``send()`` seguidos pueden llegar en un solo ``recv``; los textos fijos
    del enunciado (bienvenida, despedida y el prefijo ``[SERVER] Client:``)
    marcan dónde empieza cada uno. Un chat pegado a otro chat no se puede separar.
    """
    pieces = [piece.strip() for piece in _GLUE_RE.split(text) if piece]
    return [piece for piece in pieces if piece]


class Reframer:
    """Convierte los bytes recibidos en mensajes, con o sin ``\\n`` al final.

    Con ``lines`` una línea termina en ``\\n`` (se acepta ``\\r\\n``); con
    ``bare`` cada ``recv`` trae uno o más mensajes enteros. Las líneas vacías se
    ignoran: el enunciado no dice nada de ellas.
    """

    def __init__(self, framing: Framing) -> None:
        self.framing = framing
        self.saw_crlf = False
        self._decoder = codecs.getincrementaldecoder(proto.ENCODING)(errors="replace")
        self._pending = ""

    def feed(self, data: bytes) -> list[str]:
        """Agrega bytes y devuelve los mensajes completos."""
        self._pending += self._decoder.decode(data)
        *complete, self._pending = self._pending.split("\n")
        if self.framing == "bare" and self._pending:
            complete.append(self._pending)
            self._pending = ""
        return self._clean(complete)

    @property
    def pending(self) -> bool:
        """¿Quedó un trozo sin ``\\n``?"""
        return bool(self._pending)

    def flush(self) -> list[str]:
        """Lo que quedó sin ``\\n`` como mensaje: al cerrarse la conexión o tras un silencio."""
        rest = self._pending
        self._pending = ""
        return self._clean([rest])

    def _clean(self, raw: list[str]) -> list[str]:
        out: list[str] = []
        for line in raw:
            if line.endswith("\r"):
                self.saw_crlf = True
                line = line[:-1]
            if self.framing == "bare":
                out.extend(split_glued(line))
            elif line.strip():
                out.append(line)
        return out


def detect_framing(data: bytes) -> Framing:
    """El servidor usa líneas si lo primero que envió ya trae un ``\\n``."""
    return "lines" if b"\n" in data else "bare"


def encode(text: str, framing: Framing) -> bytes:
    """Lo que el verificador escribe: con ``\\n`` o como un ``send()`` propio sin él."""
    return (text + "\n" if framing == "lines" else text).encode(proto.ENCODING)


def number_pattern(number: int) -> re.Pattern[str]:
    """Un número entero dentro de un texto (el puerto ``40412`` no calza con ``404120``)."""
    return re.compile(rf"(?<![0-9]){number}(?![0-9])")


def word_pattern(identifier: str) -> re.Pattern[str]:
    """El identificador como palabra entera dentro de un texto (``ana`` no calza con ``anabel``).

    Un punto final (``Connected users: ana.``) no es parte del identificador.
    """
    return re.compile(rf"(?<![\w.\-]){re.escape(identifier)}(?![\w\-]|\.\w)")


def notice_subject(line: str, kind: Literal["connected", "disconnected"]) -> str | None:
    """Quién aparece en un aviso exacto ``[SERVER] Client: <id> connected!`` (o ``disconnected!``).

    A diferencia de ``protocol.parse_connected_line``, acepta espacios en el
    identificador: ``str(getpeername())`` da ``('127.0.0.1', 40412)``.
    """
    match = _NOTICE_RE.fullmatch(line)
    return match.group(1) if match and match.group(2) == kind else None


def chat_sender(line: str, text: str) -> str | None:
    """Quién envió ``text`` si la línea es exactamente ``<id>: text``; ``None`` si no."""
    suffix = ": " + text
    if not line.endswith(suffix) or len(line) == len(suffix):
        return None
    return line[: -len(suffix)]
