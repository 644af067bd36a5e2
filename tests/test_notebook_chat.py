"""El cuaderno del chat en vivo se ejecuta completo y sin errores."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "01_chat_en_vivo.ipynb"


def test_live_chat_notebook_runs_clean() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # lanza CellExecutionError si alguna celda falla

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    stderr = [o.text for o in outputs if o.output_type == "stream" and o.name == "stderr"]
    assert not stderr, f"salida en stderr: {stderr}"
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    html = "\n".join(o.get("data", {}).get("text/html", "") for o in outputs)
    # Lo esencial del enunciado aparece en lo que vieron los usuarios y el servidor.
    for line in (
        "[SERVER] Client: fran connected!",
        "carla (private): Te la compro si me la guardas hasta mañana",
        "[SERVER] Client: Connected users: ana, beto, carla, diego, elena, fran.",
        "[SERVER] Client: You don't have sufficient funds for the transaction.",
        "[SERVER] Client: You have 13000 dollars.",
        "You have been disconnected from the best chat in the universe!",
        "[SERVER] Client: diego disconnected!",
        "conexiones abiertas: 0",
    ):
        assert line in text, line
    assert "Terminal de ana" in html and "Me: :t - fran - 10000" in html
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2, "faltan las figuras de terminales y de flujo"


def test_notebooks_are_committed_without_outputs() -> None:
    for path in (NOTEBOOK, ROOT / "report" / "informe.ipynb"):
        nb = nbformat.read(path, as_version=4)
        dirty = [
            i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)
        ]
        assert not dirty, f"{path.name}: celdas con salidas guardadas: {dirty}"
