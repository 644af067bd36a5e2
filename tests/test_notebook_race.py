"""Ejecuta el notebook de condiciones de carrera de principio a fin, en un kernel nuevo.

El kernel ``python3`` de Jupyter se lanza con el mismo intérprete que corre
pytest (jupyter_client reemplaza ``python`` por ``sys.executable``), así que
ve el ``chatlib`` instalado en el virtualenv; la prueba lo verifica leyendo lo
que imprime la primera celda.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "02_condiciones_de_carrera.ipynb"
FIGURES = ROOT / "report" / "figures"
CELL_TIMEOUT = 60


def stream_text(notebook: object) -> str:
    return "".join(
        output.get("text", "")
        for cell in notebook.cells  # type: ignore[attr-defined]
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream"
    )


def test_notebook_is_committed_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None


def test_race_notebook_runs_top_to_bottom() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    started = time.time()
    client.execute()

    text = stream_text(notebook)
    prefixes = ("python :", "chatlib:")
    lines = dict(line.split(":", 1) for line in text.splitlines() if line.startswith(prefixes))
    kernel_python = Path(lines["python "].strip())
    assert kernel_python.parent == Path(sys.executable).parent, "the kernel must run this virtualenv's python"
    assert Path(lines["chatlib"].strip()).is_relative_to(ROOT)
    assert "final={'A': -50, 'B': 70}" in text
    assert "DeadlockDetected" in text
    assert "You have 12 dollars." in text

    for name in (
        "race_timeline_lost_update.png",
        "race_money_error.png",
        "race_throughput.png",
        "race_deadlock.png",
        "race_deadlock_stats.png",
        "race_sockets.png",
    ):
        figure = FIGURES / name
        assert figure.is_file() and figure.stat().st_mtime >= started - 1, f"{name} was not (re)generated"
