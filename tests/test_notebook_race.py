"""Ejecuta el notebook de condiciones de carrera de principio a fin, en un kernel nuevo.

El kernel ``python3`` de Jupyter se lanza con el mismo intérprete que corre
pytest (jupyter_client reemplaza ``python`` por ``sys.executable``), así que
ve el ``chatlib`` instalado en el virtualenv; la prueba lo verifica leyendo lo
que imprime la primera celda. Las figuras van a ``tmp_path`` (variable
``CHATLIB_FIGURES_DIR``, que el kernel hereda): la prueba no escribe en el
repositorio.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "02_condiciones_de_carrera.ipynb"


def stream_text(notebook: object) -> str:
    return "".join(
        output.get("text", "")
        for cell in notebook.cells  # type: ignore[attr-defined]
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream"
    )


def _snapshot() -> dict[str, int]:
    """Archivos de ``report/figures`` (la carpeta por omisión) y su fecha de modificación."""
    folder = ROOT / "report" / "figures"
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*")} if folder.is_dir() else {}


def test_notebook_is_committed_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None


def test_race_notebook_runs_top_to_bottom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATLIB_FIGURES_DIR", str(tmp_path))
    before = _snapshot()
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=None,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    )
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
        "timeline_lost_update",
        "money_error",
        "throughput",
        "deadlock",
        "deadlock_stats",
        "sockets",
    ):
        for suffix in (".pdf", ".png"):
            figure = tmp_path / f"race_{name}{suffix}"
            assert figure.is_file() and figure.stat().st_size > 0, f"{figure.name} was not generated"
    results = json.loads((tmp_path / "race_results.json").read_text(encoding="utf-8"))
    points = results["throughput"]
    assert {p["threads"] for p in points} == {1, 2, 4, 8}
    assert all(p["operations"] >= 100_000 and len(p["samples"]) == 5 for p in points)
    assert all(p["min"] <= p["median"] <= p["max"] for p in points)
    assert results["money_error"]["con lock (Bank)"]["broken"] == 0
    assert results["throughput_findings"], "the notebook prints what the measurement shows"
    assert _snapshot() == before, "the notebook wrote into report/figures instead of CHATLIB_FIGURES_DIR"
