"""Guionado castellano por reglas de silabeo, para cuando TeX no trae patrones.

El formato de XeLaTeX de Debian solo incluye patrones de guionado para el
castellano si está instalado ``texlive-lang-spanish``. Sin ellos, polyglossia
desactiva el guionado y un texto justificado queda lleno de espacios feos.
Este módulo silabea cada palabra del informe con las reglas ortográficas
(RAE: diptongos, hiatos, grupos consonánticos inseparables, dígrafos) y
genera una lista ``\\hyphenation{...}`` que la plantilla carga solo si faltan
los patrones. No separa vocales en hiato, como recomienda la RAE a final de
renglón.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_STRONG = set("aeoáéóíú")  # í y ú con tilde rompen el diptongo (hiato)
_WEAK = set("iuü")
_VOWELS = _STRONG | _WEAK
_INSEPARABLE = {
    "pr",
    "br",
    "tr",
    "dr",
    "cr",
    "kr",
    "gr",
    "fr",
    "pl",
    "bl",
    "cl",
    "kl",
    "gl",
    "fl",
}
_DIGRAPHS = ("ch", "ll", "rr")
_WORD_RE = re.compile(r"(?<![\w\\-])[A-Za-zÁÉÍÓÚÜÑáéíóúüñ]{7,}(?![\w-])")


def _units(word: str) -> list[str]:
    """Divide la palabra en unidades: vocales sueltas, dígrafos y consonantes."""
    units: list[str] = []
    i = 0
    while i < len(word):
        pair = word[i : i + 2]
        if pair in _DIGRAPHS:
            units.append(pair)
            i += 2
        else:
            units.append(word[i])
            i += 1
    return units


def _is_vowel(unit: str, index: int, units: list[str]) -> bool:
    if unit in _VOWELS:
        return True
    # «y» final (rey, muy) funciona como vocal.
    return unit == "y" and index == len(units) - 1 and index > 0


def syllables(word: str) -> list[str]:
    """Sílabas ortográficas de ``word`` (en minúsculas)."""
    w = word.lower()
    units = _units(w)
    kinds = ["V" if _is_vowel(u, i, units) else "C" for i, u in enumerate(units)]
    # Núcleos: secuencias de vocales, partidas en los hiatos (dos fuertes).
    nuclei: list[tuple[int, int]] = []  # (inicio, fin exclusivo) en unidades
    i = 0
    while i < len(units):
        if kinds[i] != "V":
            i += 1
            continue
        start = i
        i += 1
        while i < len(units) and kinds[i] == "V":
            prev, cur = units[i - 1], units[i]
            if prev in _STRONG and cur in _STRONG:
                break  # hiato: nuevo núcleo
            i += 1
        nuclei.append((start, i))
    if len(nuclei) < 2:
        return [w]
    cuts: list[int] = []  # índices de unidad donde empieza una sílaba nueva
    for (_, end), (nxt, _) in zip(nuclei, nuclei[1:], strict=False):
        cons = units[end:nxt]
        n = len(cons)
        if n == 0:
            cuts.append(-1)  # hiato: no se corta a final de renglón
            continue
        if n == 1:
            cut = end
        elif n == 2:
            cut = end if "".join(cons) in _INSEPARABLE else end + 1
        elif n == 3:
            cut = end + 1 if "".join(cons[1:]) in _INSEPARABLE else end + 2
        else:
            cut = end + 2
        # «h» muda tras consonante no forma grupo (des-hacer), sí tras vocal.
        cuts.append(cut)
    parts: list[str] = []
    last = 0
    for cut in cuts:
        if cut <= 0:
            continue
        parts.append("".join(units[last:cut]))
        last = cut
    parts.append("".join(units[last:]))
    return parts


def hyphenate(word: str) -> str:
    """La palabra con guiones en los puntos de corte admisibles (forma de ``\\hyphenation``)."""
    parts = syllables(word)
    # Mismos mínimos que polyglossia para el castellano: 2 letras a cada lado.
    while len(parts) > 1 and len(parts[0]) < 2:
        parts[:2] = [parts[0] + parts[1]]
    while len(parts) > 1 and len(parts[-1]) < 2:
        parts[-2:] = [parts[-2] + parts[-1]]
    return "-".join(parts)


def hyphenation_list(texts: Iterable[str]) -> str:
    """Excepciones de guionado para todas las palabras largas de ``texts``."""
    words: set[str] = set()
    for text in texts:
        for match in _WORD_RE.finditer(text):
            words.add(match.group(0).lower())
    entries = sorted(h for h in (hyphenate(w) for w in words) if "-" in h)
    return " ".join(entries)


if __name__ == "__main__":
    for sample in (
        "implementación comunicación conexiones transferencia instrumento "
        "desarrollo construcción concurrencia servidor cliente aplicación "
        "transporte paralelismo identificador establecimiento "
        "característica secuencia transacción prohibido ahorro "
        "problema obstáculo abstracción excepción programación"
    ).split():
        print(hyphenate(sample))
