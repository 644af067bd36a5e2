"""Laboratorio de enseñanza: nada de esto lo necesita el servidor del chat.

- ``chatlib.lab.strategies``: bancos con distintas estrategias de sincronización
  (sin lock, un lock global, un lock por cuenta con y sin orden).
- ``chatlib.lab.racelab``: intercalaciones forzadas y experimentos de carreras.
- ``chatlib.lab.demo``: la sesión guionada de seis usuarios, sus gráficos y
  mediciones (usa matplotlib, solo aquí).
- ``chatlib.lab.capture``: los segmentos TCP de una sesión corta, capturados en loopback.

El servidor solo importa de aquí detrás de ``--unsafe-bank``, y lo hace por
``unsafe_bank``, que necesita solo la biblioteca estándar.
"""

from __future__ import annotations

from chatlib.bank import Bank

__all__ = ["unsafe_bank"]


def unsafe_bank(window: float = 0.01) -> Bank:
    """Un banco SIN lock que duerme ``window`` segundos entre leer y escribir un saldo.

    Es la fábrica pública que usa ``python -m chatlib.server --unsafe-bank``: con
    dos transferencias concurrentes el dinero aparece y desaparece. Solo para el
    laboratorio de condiciones de carrera.
    """
    from chatlib.lab.strategies import UnsafeBank

    return UnsafeBank(window=window)
