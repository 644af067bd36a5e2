"""El informe se construye desde el cuaderno y el PDF tiene lo que pide el enunciado.

La prueba del PDF necesita XeLaTeX, pandoc y poppler (CI los instala). Si faltan,
la prueba falla con el mensaje de ``report/build.py``, que dice qué instalar:
un informe que no se puede construir no es un informe entregable.
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "report" / "build.py"
PDF = ROOT / "report" / "informe.pdf"
HTML = ROOT / "report" / "informe.html"


def _run_build(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BUILD), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=400,
        env=env,
    )


@pytest.fixture(scope="module")
def pdf() -> Path:
    started = time.time()
    proc = _run_build("--require-pdf")
    assert proc.returncode == 0, f"report/build.py falló:\n{proc.stdout[-4000:]}"
    assert PDF.exists() and PDF.stat().st_mtime >= started - 1, f"no se generó {PDF}:\n{proc.stdout[-2000:]}"
    return PDF


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"falta {name} (Debian: apt-get install poppler-utils)"
    return path


@pytest.fixture(scope="module")
def text(pdf: Path) -> str:
    out = subprocess.run(
        [_tool("pdftotext"), "-enc", "UTF-8", str(pdf), "-"], stdout=subprocess.PIPE, text=True, check=True
    ).stdout
    return out


def _flat(text: str) -> str:
    """Texto con los espacios colapsados y sin los guiones de fin de renglón."""
    joined = re.sub(r"(\w)-\n(\w)", r"\1\2", text)
    return re.sub(r"\s+", " ", joined)


def test_required_sections_and_questions(text: str) -> None:
    flat = _flat(text)
    for needle in (
        "Proyecto 1: Implementación Sockets",
        "Cesár Azurdia M.",
        "Hojin Kang",
        "Mauricio Romero",
        "Pablo Palacios",
        "Sandy Bolufe",
        "Erwin Paillacan",
        "Índice",
        "Índice de figuras",
        "Introducción",
        "Marco teórico",
        "¿Qué es un socket?",
        "¿Cómo funciona un socket?",
        "¿Qué tipo de socket se utilizó en la implementación y cuáles son sus características?",
        "Descripción del servidor",
        "Discusión y conclusiones",
        "Conclusiones",
        "Referencias",
        "RFC 9293",
        "UNIX Network Programming",
        "The Linux Programming Interface",
        "SOCK_STREAM",
        "SOCK_DGRAM",
        "Código fuente",
    ):
        assert needle in flat, f"falta en el PDF: {needle!r}"


def test_code_listings_match_current_source(text: str) -> None:
    from chatlib.bank import Bank
    from chatlib.server import ChatServer, Session

    flat = _flat(text)
    for obj in (Bank.transfer, Session.run, ChatServer._accept_one):
        def_line = inspect.getsource(obj).strip().splitlines()[0]
        assert re.sub(r"\s+", " ", def_line) in flat, f"el PDF no tiene el código actual: {def_line!r}"
    # El apéndice reproduce los archivos completos: su última línea no vacía está.
    for path in ("chatlib/server.py", "chatlib/client.py", "chatlib/bank.py"):
        last = [ln for ln in (ROOT / path).read_text(encoding="utf-8").splitlines() if ln.strip()][-1]
        assert re.sub(r"\s+", " ", last.strip()) in flat, f"{path}: el apéndice no está completo"


def test_real_transcript_is_in_the_report(text: str) -> None:
    flat = _flat(text)
    assert "[SERVER] Client: ana connected!" in flat
    assert "[SERVER] Client: diego disconnected!" in flat


def test_figures_pages_and_no_notebook_noise(pdf: Path, text: str) -> None:
    listing = subprocess.run(
        [_tool("pdfimages"), "-list", str(pdf)], stdout=subprocess.PIPE, text=True, check=True
    ).stdout
    images = [ln for ln in listing.splitlines()[2:] if ln.strip() and " smask " not in ln]
    assert len(images) >= 4, f"solo {len(images)} figuras en el PDF"

    info = subprocess.run([_tool("pdfinfo"), str(pdf)], stdout=subprocess.PIPE, text=True, check=True).stdout
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))
    assert 12 <= pages <= 60, f"{pages} páginas"

    assert "Traceback" not in text
    assert not re.search(r"(?m)^\s*\w*(?:Error|Exception|Warning): ", text), "hay un error o aviso en el PDF"
    assert not re.search(r"In \[\s*\d*\]:", text), "hay prompts de Jupyter en el PDF"
    assert "\\ref{" not in text and "??" not in text, "referencias cruzadas sin resolver"


def test_without_tex_the_build_explains_and_writes_html() -> None:
    env = dict(os.environ, INFORME_PRETEND_NO_TEX="1")
    started = time.time()
    proc = _run_build(env=env)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "texlive-xetex texlive-fonts-recommended texlive-plain-generic pandoc" in proc.stdout
    assert HTML.exists() and HTML.stat().st_mtime >= started - 1
    html = HTML.read_text(encoding="utf-8")
    assert "Proyecto 1: Implementación Sockets" in html
    assert "Marco teórico" in html and "Traceback" not in html
