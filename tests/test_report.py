"""El informe se construye desde el cuaderno y el PDF tiene lo que pide el enunciado.

La prueba del PDF necesita XeLaTeX, pandoc y poppler (CI los instala). Si faltan,
la prueba falla con el mensaje de ``report/build.py``, que dice qué instalar:
un informe que no se puede construir no es un informe entregable.

Todo se construye en carpetas temporales (``report/build.py --outdir``): las
pruebas nunca escriben en ``report/`` ni en otra carpeta del repositorio.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "report"
BUILD = REPORT / "build.py"
NOTEBOOK = REPORT / "informe.ipynb"
BODY_MAX_PAGES = 20

sys.path.insert(0, str(REPORT))


def _run_build(
    outdir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BUILD), "--outdir", str(outdir), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"falta {name} (Debian: apt-get install poppler-utils)"
    return path


def _metadata() -> dict:
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))["metadata"]["informe"]


@pytest.fixture(scope="module")
def outdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("informe")
    proc = _run_build(out, "--require-pdf")
    assert proc.returncode == 0, f"report/build.py falló:\n{proc.stdout[-4000:]}"
    assert (out / "informe.pdf").exists(), f"no se generó el PDF:\n{proc.stdout[-2000:]}"
    (out / "build.log").write_text(proc.stdout, encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def pdf(outdir: Path) -> Path:
    return outdir / "informe.pdf"


@pytest.fixture(scope="module")
def text(pdf: Path) -> str:
    return subprocess.run(
        [_tool("pdftotext"), "-enc", "UTF-8", str(pdf), "-"], stdout=subprocess.PIPE, text=True, check=True
    ).stdout


@pytest.fixture(scope="module")
def pages(text: str) -> list[str]:
    return text.split("\f")


@pytest.fixture(scope="module")
def tex(outdir: Path) -> str:
    return (outdir / "build" / "informe.tex").read_text(encoding="utf-8")


def _flat(text: str) -> str:
    """Texto con los espacios colapsados y sin los guiones de fin de renglón."""
    joined = re.sub(r"(\w)-\n(\w)", r"\1\2", text)
    return re.sub(r"\s+", " ", joined.replace("\u202f", " "))


def test_build_output_is_quiet(outdir: Path) -> None:
    log = (outdir / "build.log").read_text(encoding="utf-8")
    assert "running over TCP" not in log
    assert "Traceback" not in log
    assert "glifos ausentes" not in log, log


def test_required_sections_and_questions(text: str) -> None:
    flat = _flat(text)
    for needle in (
        "Proyecto 1: Implementación Sockets",
        "César Azurdia M.",
        "EL4005 Principios de Comunicaciones",
        "Semestre:",
        "Fecha de entrega:",
        "Hojin Kang",
        "Mauricio Romero",
        "Pablo Palacios",
        "Sandy Bolufe",
        "Erwin Paillacan",
        "Índice",
        "Introducción",
        "Marco teórico",
        "¿Qué es un socket?",
        "¿Cómo funciona un socket?",
        "¿Qué tipo de socket se utilizó en la implementación y cuáles son sus características?",
        "Descripción del servidor",
        "Ejecución",
        "--host 0.0.0.0",
        "python -m chatlib.check HOST PORT",
        "Discusión y conclusiones",
        "Conclusiones",
        "Referencias",
        "RFC 9293",
        "RFC 768",
        "RFC 896",
        "RFC 1122",
        "RFC 6335",
        "Computer Networking: A Top-Down Approach",
        "UNIX Network Programming",
        "The Linux Programming Interface",
        "SOCK_STREAM",
        "SOCK_DGRAM",
        "Código fuente",
    ):
        assert needle in flat, f"falta en el PDF: {needle!r}"
    assert "Cesár" not in flat, "el nombre del profesor va con la tilde en la e: César"
    assert "Índice de listados" not in flat


def test_pdf_metadata_follows_the_cover_block(pdf: Path) -> None:
    info = subprocess.run([_tool("pdfinfo"), str(pdf)], stdout=subprocess.PIPE, text=True, check=True).stdout
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    meta = _metadata()
    assert fields["Title"].strip() == meta["title"]
    assert fields["Author"].strip() == ", ".join(meta["authors"])
    assert fields["Subject"].strip() == meta["course"]
    professor = next(entry for entry in meta["staff"] if entry["role"] == "Profesor")
    assert professor["names"] == ["César Azurdia M."]


def test_body_fits_in_twenty_pages(pages: list[str]) -> None:
    # La primera página del anexo lleva su título en el encabezado («A. Complementos…»).
    appendix = next(
        i for i, page in enumerate(pages) if re.search(r"^A\. Complementos de la sección 3$", page, re.M)
    )
    assert appendix <= BODY_MAX_PAGES, f"el cuerpo (antes del anexo) tiene {appendix} páginas"
    body = "\n".join(pages[:appendix])
    for section in ("Introducción", "Marco teórico", "Descripción del servidor", "Discusión y conclusiones"):
        assert re.search(rf"^\d+\s+{section}\s*$", body, re.M), (
            f"la sección {section!r} no está entera en el cuerpo"
        )
    assert "Referencias" in pages[appendix - 1]


def test_every_float_is_cited_by_number(tex: str) -> None:
    labels = re.findall(r"\\label\{((?:fig|tbl|lst):[^}]+)\}", tex)
    assert len(labels) >= 15
    without_labels = re.sub(r"\\label\{[^}]+\}", "", tex)
    cited = set(re.findall(r"\\ref\{([^}]+)\}", without_labels))
    missing = [label for label in labels if label not in cited and not label.startswith("lst:file-")]
    assert not missing, f"flotantes que el texto nunca cita: {missing}"


def test_references_are_all_cited_in_order(text: str) -> None:
    import references

    body, _, refs = _flat(text).partition("Referencias [1]")
    assert refs, "no está la lista de referencias"
    numbers = [
        int(n) for n in re.findall(r"\[(\d+)\]", "[1]" + refs.split("Complementos de la sección 3")[0])
    ]
    assert numbers == list(range(1, len(references.ENTRIES) + 1))
    # Citas del texto: corchetes que no siguen a un identificador (``lines[0]`` es código).
    groups = re.findall(r"(?<![\w\]])\[(\d+(?:, \d+)*)\]", body)
    cited = {int(n) for group in groups for n in group.split(", ")}
    assert set(numbers) <= cited, f"sin citar: {set(numbers) - cited}"
    seen: list[int] = []
    for n in (int(n) for group in groups for n in group.split(", ")):
        if n in numbers and n not in seen:
            seen.append(n)
    assert seen == sorted(seen), "IEEE: las referencias se numeran por orden de primera cita"


def test_code_listings_match_current_source(text: str) -> None:
    from chatlib.bank import Bank
    from chatlib.outbox import Outbox
    from chatlib.server import ChatServer, Session

    flat = _flat(text)
    for obj in (Bank.transfer, Session.run, ChatServer._accept_one, Outbox.push):
        def_line = inspect.getsource(obj).strip().splitlines()[0]
        assert re.sub(r"\s+", " ", def_line) in flat, f"el PDF no tiene el código actual: {def_line!r}"
    # El anexo reproduce los archivos completos: su última línea no vacía está.
    for path in ("chatlib/server.py", "chatlib/client.py", "chatlib/bank.py"):
        last = [ln for ln in (ROOT / path).read_text(encoding="utf-8").splitlines() if ln.strip()][-1]
        assert re.sub(r"\s+", " ", last.strip()) in flat, f"{path}: el anexo no está completo"


def test_real_sessions_are_in_the_report(text: str) -> None:
    flat = _flat(text)
    assert "[SERVER] Client: ana connected!" in flat
    assert "[SERVER] Client: diego disconnected!" in flat
    # Evidencia de los casos de error (requisitos 2, 5 y 7).
    assert "The identifier 'ANA' is already in use" in flat
    assert "The balance must be a non-negative whole number" in flat
    assert "There is no connected user called 'nadie'" in flat
    assert "Usage: :p - <Identifier> - <Message>" in flat


def test_server_description_follows_the_current_code(text: str) -> None:
    from chatlib.server import build_parser

    flat = _flat(text)
    # Ejecución: cada opción de la línea de comandos del servidor, y el primer cuaderno del curso.
    for action in build_parser()._actions:
        for option in action.option_strings:
            if option.startswith("--"):
                assert option in flat, f"la sección Ejecución no menciona {option}"
    assert "notebooks/00_sockets_paso_a_paso.ipynb" in flat
    # La sección 3 describe el servidor endurecido, no el de antes.
    for needle in ("chatlib-console", "no bloqueantes", "select.poll()", "hold_account", "wait_for_room"):
        assert needle in flat, f"la sección 3 no menciona {needle!r}"
    for stale in ("MSG_DONTWAIT", "BACKPRESSURE_WAIT", "remove_session", "fondear", "_shutdown_socket"):
        assert stale not in flat, f"el informe todavía dice {stale!r}"


def test_handshake_figure_says_whether_it_is_a_capture(text: str) -> None:
    flat = _flat(text)
    captured = "es la captura de una conexión real del chat" in flat
    drawn = "es un diagrama dibujado y no una captura real" in flat
    assert captured != drawn, "la sección 2.2 debe decir si la figura es una captura o un dibujo"
    if sys.platform.startswith("linux") and os.geteuid() == 0:
        assert captured, "como root en Linux la construcción debe usar la captura real"
    if captured:
        assert "TIME_WAIT" in flat and "segmentos de la captura" in flat


def test_race_lab_method_and_honest_results(text: str) -> None:
    flat = _flat(text)
    assert "sys.getswitchinterval()" in flat
    assert "no observar una carrera no prueba que no exista" in flat
    assert "100 000 transferencias" in flat
    assert "dentro del ruido" in flat
    assert "entrega es una línea recibida por un receptor" in flat


def test_figures_are_vector_spanish_and_legible(outdir: Path, pdf: Path) -> None:
    figures = sorted((outdir / "build" / "figures").glob("*.pdf"))
    assert len(figures) >= 10, [f.name for f in figures]
    english = re.compile(
        r"\b(naive|ordered|deliveries|receivers|threaded|throughput|target|Insufficient\w*|Deadlock\w*|Error|"
        r"Exception)\b|\{'"
    )
    for figure in figures:
        words = subprocess.run(
            [_tool("pdftotext"), "-bbox", str(figure), "-"], stdout=subprocess.PIPE, text=True, check=True
        ).stdout
        boxes = re.findall(
            r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>', words
        )
        assert boxes, f"{figure.name}: sin texto vectorial"
        # Una letra de 8 pt da cajas de unos 9 pt de alto (ascendente + descendente). En un
        # texto girado el alto queda como ancho: el tamaño es el lado menor de la caja, que en
        # palabras de tres o más letras es siempre el alto de la letra (en las más cortas, como
        # «−» o la ligadura «fi», el ancho puede ser menor: se usa el lado mayor).
        sizes = []
        for x0, y0, x1, y1, word in boxes:
            w, h = float(x1) - float(x0), float(y1) - float(y0)
            sizes.append((min(w, h) if len(word) >= 3 else max(w, h), word))
        size, word = min(sizes)
        assert size >= 8.0, f"{figure.name}: «{word}» con caja de {size:.1f} pt"
        content = " ".join(w for *_, w in boxes)
        found = english.search(content)
        assert not found, f"{figure.name}: rótulo en inglés {found.group(0)!r}"
    # Ninguna figura queda más ancha que el texto: se insertan sin escalar.
    width_pt = 16.0 / 2.54 * 72
    for figure in figures:
        info = subprocess.run(
            [_tool("pdfinfo"), str(figure)], stdout=subprocess.PIPE, text=True, check=True
        ).stdout
        w = float(re.search(r"Page size:\s+([\d.]+) x", info).group(1))
        assert w <= width_pt + 1, f"{figure.name}: {w:.0f} pt de ancho"


def test_no_notebook_noise(text: str) -> None:
    assert "Traceback" not in text
    assert not re.search(r"(?m)^\s*\w*(?:Error|Exception|Warning): ", text), "hay un error o aviso en el PDF"
    assert not re.search(r"In \[\s*\d*\]:", text), "hay prompts de Jupyter en el PDF"
    assert "\\ref{" not in text and "??" not in text, "referencias cruzadas sin resolver"
    assert "[@" not in text, "citas sin numerar"


def test_without_tex_the_build_explains_writes_html_and_retires_the_old_pdf(tmp_path: Path) -> None:
    stale = tmp_path / "informe.pdf"
    stale.write_bytes(b"%PDF-1.4 de una construccion anterior")
    env = dict(os.environ, INFORME_PRETEND_NO_TEX="1")
    proc = _run_build(tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "texlive-xetex texlive-fonts-recommended texlive-plain-generic pandoc" in proc.stdout
    assert not stale.exists(), "un PDF viejo no debe quedar con el nombre del actual"
    assert (tmp_path / "informe.pdf.old").read_bytes().startswith(b"%PDF-1.4 de una")
    assert "informe.pdf.old" in proc.stdout
    html = (tmp_path / "informe.html").read_text(encoding="utf-8")
    assert "Proyecto 1: Implementación Sockets" in html
    assert "Marco teórico" in html and "Traceback" not in html
    assert "César Azurdia M." in html and "EL4005" in html


# --- Piezas del informe que se prueban sin construirlo ---------------------------------


def test_listing_lookup_fails_loudly_when_code_moves() -> None:
    from chatlib.server import Session

    import informe_lib

    assert informe_lib.lookup("chatlib.server.Session.run") is Session.run
    with pytest.raises(LookupError, match="Session.*ya no tiene 'no_such_method'"):
        informe_lib.lookup("chatlib.server.Session.no_such_method")
    with pytest.raises(LookupError, match="ningún módulo"):
        informe_lib.lookup("nochatlib.server")


def test_reference_numbering_rejects_unknown_and_unused_entries() -> None:
    import references

    every = " ".join(f"[@{key}]" for key in references.ENTRIES)
    order = references.numbering(["primero [@rfc768; @kurose]", every])
    assert order["rfc768"] == 1 and order["kurose"] == 2
    assert references.replace_citations("ver [@kurose; @rfc768]", order) == "ver [1, 2]"
    with pytest.raises(KeyError, match="desconocida"):
        references.numbering([every + " [@nadie]"])
    with pytest.raises(ValueError, match="nunca cita"):
        references.numbering(["[@kurose]"])


def test_bench_section_shows_every_row_of_the_committed_run() -> None:
    import bench_report

    samples = bench_report.load()
    rows = bench_report.rows(samples)
    measured = {(s, p) for (s, p, _server, _metric) in samples}
    shown = {(r.scenario, r.param) for r in rows}
    known = {s for s, _ in bench_report.METRICS}
    assert {(s, p) for s, p in measured if s in known} == shown
    assert all(len(cells) == 6 for cells in bench_report.table_rows(rows))
    assert any(r.verdict == "asyncio" for r in rows), "las filas que pierde el servidor con hilos también van"


def test_bench_section_takes_new_scenarios_without_breaking() -> None:
    import bench_report

    samples: dict[tuple[str, str, str, str], list[float]] = {}
    for server, base in (("threaded", 1.0), ("asyncio", 2.0)):
        samples[("transfers_ok", "50000", server, "transfers_per_s")] = [base * 100, base * 110]
        samples[("memory", "1000", server, "rss_per_client_kib")] = [base * 30, base * 31]
        for metric in ("flood_kib_s", "readers_min_kib_s", "slow_reader_kib_s", "paced_cut"):
            samples[("fairness", "100", server, metric)] = [base * 10, base * 12]
    samples[("memory", "1000", "floor", "rss_per_client_kib")] = [20.0, 21.0]
    assert bench_report.joins_ceilings(samples) == []
    for server, values in (
        ("threaded", [1000.0, 1100.0]),
        ("asyncio", [1500.0]),
        ("floor+notices", [2000.0]),
        ("floor+portable", [1400.0, 1600.0]),
    ):
        samples[("joins", "2000", server, "joins_per_s")] = values
    assert bench_report.joins_ceilings(samples) == [
        ("2000", {"threaded": 1050.0, "asyncio": 1500.0, "floor+notices": 2000.0, "floor+portable": 1500.0})
    ]
    rows = bench_report.rows(samples)
    assert {(r.scenario, r.param) for r in rows} == {
        ("transfers_ok", "50000"),
        ("memory", "1000"),
        ("fairness", "100"),
        ("joins", "2000"),
    }
    cells = bench_report.table_rows(rows)
    assert all(len(row) == 6 for row in cells)
    assert {row[1] for row in cells} == {"50\u202f000 :t", "N = 1000", "100 clientes", "2000 clientes"}
    assert bench_report.memory_floor(samples) == [("1000", 30.5, 20.5)]
    assert bench_report.relay_ceiling(samples) is None
    for n, scale in (("100", 1.0), ("1000", 2.0)):
        for server, flood, p99 in (
            ("threaded", [10.0, 12.0], [5.0]),
            ("asyncio", [11.0], [4.0, 6.0]),
            ("floor+relay", [13.0], [4.5]),
        ):
            samples[("fanout", n, server, "deliveries_per_s")] = [v * scale for v in flood]
            samples[("latency", n, server, "p99_ms")] = [v * scale for v in p99]
    assert bench_report.relay_ceiling(samples) == (
        "1000",
        {
            ("threaded", "deliveries_per_s"): 22.0,
            ("threaded", "p99_ms"): 10.0,
            ("asyncio", "deliveries_per_s"): 22.0,
            ("asyncio", "p99_ms"): 10.0,
            ("floor+relay", "deliveries_per_s"): 26.0,
            ("floor+relay", "p99_ms"): 9.0,
        },
    )


def test_bench_verdicts_follow_the_noise_bands() -> None:
    import bench_report

    def row(threaded: list[float], asyncio: list[float], higher: bool = True) -> bench_report.Row:
        return bench_report.Row(
            "fanout", "10", "m", "m", "u", 0, higher, {"threaded": threaded, "asyncio": asyncio}
        )

    assert row([10, 11, 12], [11.5, 13, 14]).verdict == "dentro del ruido"
    assert row([20, 21, 22], [10, 11, 12]).verdict == "hilos"
    assert row([20, 21, 22], [10, 11, 12], higher=False).verdict == "asyncio"


def test_number_format_and_font_floor() -> None:
    from chatlib.lab import figures

    assert figures.format_number(4096) == "4096"
    assert figures.format_number(32000) == "32\u202f000"
    assert figures.format_number(0.25, 2) == "0,25"
    fig, ax = figures.new_figure(0.5, 1.5)
    ax.plot([0, 1], [0, 1])
    figures.decimal_comma(ax)
    fig.canvas.draw()
    assert all("." not in t.get_text() for t in ax.get_yticklabels())
    ax.set_title("letra chica", fontsize=6)
    with pytest.raises(ValueError, match="bajo 8 pt"):
        figures.save(fig, Path(os.devnull) / "nunca")
