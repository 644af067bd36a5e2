"""Verificador de conformidad para cualquier servidor de esta tarea, en cualquier lenguaje.

Se conecta por TCP a un servidor que el usuario ya inició (nunca lo inicia ni lo
detiene), descubre cómo habla y prueba cada requisito del enunciado que se ve
desde la red. Uso::

    python -m chatlib.check 127.0.0.1 5000
"""

from chatlib.check.checks import KEYS, REQUIREMENTS, run
from chatlib.check.report import Report, Result, Verdict, format_table, to_json
from chatlib.check.wire import Settings

__all__ = [
    "KEYS",
    "REQUIREMENTS",
    "Report",
    "Result",
    "Settings",
    "Verdict",
    "format_table",
    "run",
    "to_json",
]
