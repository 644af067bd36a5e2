"""Utilidades de prueba: esperar una condición con plazo, en vez de dormir a ciegas."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Reintenta ``predicate`` hasta que sea verdadero; falla con ``what`` si vence el plazo."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        pause.wait(0.01)


def chatlib_threads() -> list[str]:
    """Nombres de los hilos del servidor que siguen vivos."""
    return [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("chatlib-") and "client-reader" not in t.name
    ]
