"""Mide cuánto tarda cada cuaderno: en un kernel nuevo y otra vez en el mismo kernel.

Uso: ``.venv/bin/python notebooks/time_notebooks.py [cuaderno.ipynb ...]``
(sin argumentos mide ``00_sockets_paso_a_paso.ipynb``). La primera cifra
incluye el arranque del kernel; la segunda muestra que el cuaderno se puede
volver a ejecutar sin reiniciar. Es una medición, no una prueba.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import nbclient
import nbformat

HERE = Path(__file__).resolve().parent
DEFAULT = [HERE / "00_sockets_paso_a_paso.ipynb"]


def time_notebook(path: Path) -> tuple[float, float]:
    """(segundos en un kernel nuevo, segundos de la segunda ejecución en el mismo kernel)."""
    first = nbformat.read(path, as_version=4)
    second = copy.deepcopy(first)
    client = nbclient.NotebookClient(
        first, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    times = []
    start = time.perf_counter()
    with client.setup_kernel():
        for notebook in (first, second):
            for index, cell in enumerate(notebook.cells):
                client.execute_cell(cell, index)
            times.append(time.perf_counter() - start)
            start = time.perf_counter()
    return times[0], times[1]


def main(argv: list[str]) -> int:
    for path in [Path(arg).resolve() for arg in argv] or DEFAULT:
        fresh, again = time_notebook(path)
        print(f"{path.name}: kernel nuevo {fresh:.1f} s (con arranque), segunda vez {again:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
