"""El cuaderno 00 "Sockets paso a paso" corre completo, dos veces seguidas en el mismo kernel.

Lo que se verifica son observaciones del sistema (psutil, excepciones,
paquetes), no textos fijos del cuaderno: si una llamada dejara de producir el
estado que explica la prosa, la prueba falla. Los estados son los de Linux,
donde corren las pruebas; la captura (sección 7) necesita además root, como
aquí y en CI, y sin eso se verifica que el cuaderno diga por qué la omite.
"""

from __future__ import annotations

import copy
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "00_sockets_paso_a_paso.ipynb"
CAN_CAPTURE = sys.platform.startswith("linux") and os.geteuid() == 0

OBSERVED_ON_LINUX = (
    "LISTEN       este proceso",
    "OSError: EADDRINUSE",
    "dentro del rango efímero",
    "ESTABLISHED  ningún proceso",
    "nadie la ha aceptado todavía",
    "la misma 4-tupla vista desde cada lado: True",
    "un recv(1024) retornó 10 bytes: b'hola\\nchao\\n'",
    "feed(b'lance?\\n'   ) → ['[SERVER] Client: What is your balance?']",
    "feed(b'hola\\nchao\\n') → ['hola', 'chao']",
    "recv() después del FIN del otro lado: b''",
    "FIN_WAIT2",
    "CLOSE_WAIT   este proceso",
    "TIME_WAIT    ningún proceso",
    "recv() lanzó ConnectionResetError",
    "sin TIME_WAIT",
    "se rindió: TimeoutError",
    "BlockingIOError: EAGAIN",
    "conexión 1: nada (select nunca la marcó lista)",
    "NONE         este proceso",
    "recvfrom(1024) → b'chao\\n'",
    "retornó 12: no hubo error",
    "donde nadie escucha: ConnectionRefusedError",
    "recvfrom(10) → 10 bytes",
    "el recvfrom() siguiente → b'siguiente'",
    "bandera MSG_TRUNC: True",
)

SUMMARY = r"copias vistas: (\d+); copias salientes descartadas: (\d+); segmentos: (\d+)"
CAPTURED = (
    "You have been disconnected from the best chat in the universe!",
    "cliente envía «ana\\n»",
    "primer FIN enviado por: servidor",
    "SO_REUSEADDR=0: EADDRINUSE",
    "SO_REUSEADDR=1: bind() funcionó",
)


def execute_twice(path: Path) -> tuple[Any, Any]:
    """Ejecuta el cuaderno en un kernel nuevo y luego otra vez en el mismo kernel."""
    first = nbformat.read(path, as_version=4)
    second = copy.deepcopy(first)
    client = nbclient.NotebookClient(
        first, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    with client.setup_kernel():
        for notebook in (first, second):
            for index, cell in enumerate(notebook.cells):
                client.execute_cell(cell, index)  # lanza CellExecutionError si una celda falla
    return first, second


def outputs(notebook: Any) -> list[Any]:
    return [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]


def check_run(notebook: Any) -> None:
    found = outputs(notebook)
    assert not [o for o in found if o.output_type == "error"]
    stderr = [o.text for o in found if o.output_type == "stream" and o.name == "stderr"]
    assert not stderr, f"salida en stderr: {stderr}"
    text = "".join(o.get("text", "") for o in found if o.output_type == "stream")
    assert "No observable aquí" not in text, "en Linux todo se puede observar"
    for observed in OBSERVED_ON_LINUX:
        assert observed in text, observed
    markdown = "\n".join(o.get("data", {}).get("text/markdown", "") for o in found)
    images = [o for o in found if "image/png" in o.get("data", {})]
    if CAN_CAPTURE:
        counts = re.search(SUMMARY, text)
        assert counts, "falta el resumen de la captura"
        seen, dropped, kept = map(int, counts.groups())
        assert seen == 2 * kept and dropped == kept, "en loopback cada paquete se ve dos veces"
        for observed in CAPTURED:
            assert observed in text, observed
        assert "| 1 | 0.00 | cliente → servidor | SYN | 0 |  | 0 |  | saludo |" in markdown
        assert "| SYN,ACK | 0 | 1 | 0 |" in markdown and "FIN,ACK" in markdown
        assert len(images) == 1, "falta el diagrama de secuencia"
    else:
        assert "No se puede capturar aquí" in text and "Se omite esta sección." in text
        assert not markdown.strip() and not images


def test_primer_notebook_runs_clean_twice_in_the_same_kernel() -> None:
    first, second = execute_twice(NOTEBOOK)
    check_run(first)
    check_run(second)


def test_primer_notebook_is_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{NOTEBOOK.name}: celdas con salidas guardadas: {dirty}"
