"""Referencias del informe en estilo IEEE y su numeración por orden de primera cita.

En el texto se cita con claves, ``[@rfc9293]`` o ``[@stevens; @kerrisk]``;
``report/build.py`` (``number_citations``) las reemplaza por ``[1]``, ``[2, 3]``
en el orden en que aparecen por primera vez, y escribe la lista en el lugar
marcado con ``REFERENCES_MARK``. Una clave desconocida o una entrada que nunca se
cita detienen la construcción: toda referencia de la lista está citada.
"""

from __future__ import annotations

import re

ACCESSED = "1 dic. 2026"
"""Fecha en que se consultaron las fuentes en línea."""

REFERENCES_MARK = "<!-- lista de referencias -->"

_WEB = f"[En línea]. Disponible en: {{url}}. [Consultado: {ACCESSED}]."

ENTRIES: dict[str, str] = {
    "kurose": (
        "J. F. Kurose y K. W. Ross, *Computer Networking: A Top-Down Approach*, 8.ª ed. "
        "Hoboken, NJ, EE. UU.: Pearson, 2021."
    ),
    "stevens": (
        "W. R. Stevens, B. Fenner y A. M. Rudoff, *UNIX Network Programming, Volume 1: The Sockets "
        "Networking API*, 3.ª ed. Boston, MA, EE. UU.: Addison-Wesley, 2004."
    ),
    "kerrisk": (
        "M. Kerrisk, *The Linux Programming Interface*. San Francisco, CA, EE. UU.: No Starch Press, "
        "2010, caps. 56–61."
    ),
    "pysocket": (
        "Python Software Foundation, «socket — Low-level networking interface», documentación de "
        "Python 3. " + _WEB.format(url="<https://docs.python.org/3/library/socket.html>")
    ),
    "rfc6335": (
        "M. Cotton, L. Eggert, J. Touch, M. Westerlund y S. Cheshire, «Internet Assigned Numbers "
        "Authority (IANA) Procedures for the Management of the Service Name and Transport Protocol "
        "Port Number Registry», RFC 6335, IETF, ago. 2011. "
        + _WEB.format(url="<https://www.rfc-editor.org/rfc/rfc6335>")
    ),
    "rfc9293": (
        "W. Eddy, Ed., «Transmission Control Protocol (TCP)», RFC 9293, IETF, ago. 2022. "
        + _WEB.format(url="<https://www.rfc-editor.org/rfc/rfc9293>")
    ),
    "rfc768": (
        "J. Postel, «User Datagram Protocol», RFC 768, IETF, ago. 1980. "
        + _WEB.format(url="<https://www.rfc-editor.org/rfc/rfc768>")
    ),
    "rfc896": (
        "J. Nagle, «Congestion Control in IP/TCP Internetworks», RFC 896, IETF, ene. 1984. "
        + _WEB.format(url="<https://www.rfc-editor.org/rfc/rfc896>")
    ),
    "rfc1122": (
        "R. Braden, Ed., «Requirements for Internet Hosts — Communication Layers», RFC 1122, IETF, "
        "oct. 1989. " + _WEB.format(url="<https://www.rfc-editor.org/rfc/rfc1122>")
    ),
    "pythreading": (
        "Python Software Foundation, «threading — Thread-based parallelism», documentación de "
        "Python 3. " + _WEB.format(url="<https://docs.python.org/3/library/threading.html>")
    ),
    "pysys": (
        "Python Software Foundation, «sys.setswitchinterval», en «sys — System-specific parameters "
        "and functions», documentación de Python 3. "
        + _WEB.format(url="<https://docs.python.org/3/library/sys.html>")
    ),
    "pyselectors": (
        "Python Software Foundation, «selectors — High-level I/O multiplexing», documentación de "
        "Python 3. " + _WEB.format(url="<https://docs.python.org/3/library/selectors.html>")
    ),
    "c10k": "D. Kegel, «The C10K problem». " + _WEB.format(url="<http://www.kegel.com/c10k.html>"),
    "pyssl": (
        "Python Software Foundation, «ssl — TLS/SSL wrapper for socket objects», documentación de "
        "Python 3. " + _WEB.format(url="<https://docs.python.org/3/library/ssl.html>")
    ),
}

CITATION = re.compile(r"\[(@[\w-]+(?:\s*;\s*@[\w-]+)*)\]")


def citation_keys(text: str) -> list[str]:
    """Claves citadas en ``text``, en orden de aparición (con repeticiones)."""
    return [key.strip().lstrip("@") for group in CITATION.findall(text) for key in group.split(";")]


def numbering(texts: list[str]) -> dict[str, int]:
    """Número de cada clave por orden de primera cita; falla si una clave no existe o sobra una entrada."""
    order: dict[str, int] = {}
    for text in texts:
        for key in citation_keys(text):
            if key not in ENTRIES:
                raise KeyError(f"cita a una referencia desconocida: @{key}")
            order.setdefault(key, len(order) + 1)
    unused = sorted(set(ENTRIES) - set(order))
    if unused:
        raise ValueError("referencias que el texto nunca cita: " + ", ".join(unused))
    return order


def replace_citations(text: str, order: dict[str, int]) -> str:
    """``[@a; @b]`` → ``[1, 2]`` según ``order``."""

    def one(match: re.Match[str]) -> str:
        numbers = sorted(order[key.strip().lstrip("@")] for key in match.group(1).split(";"))
        return "[" + ", ".join(str(n) for n in numbers) + "]"

    return CITATION.sub(one, text)


def reference_list(order: dict[str, int]) -> str:
    """La lista en markdown, un párrafo «[n] entrada» por referencia, en el orden de ``order``."""
    return "\n\n".join(f"\\[{n}\\] {ENTRIES[key]}" for key, n in sorted(order.items(), key=lambda kv: kv[1]))
