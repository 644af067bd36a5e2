#!/usr/bin/env python3
"""Construye el informe: ejecuta ``report/informe.ipynb`` y lo exporta a PDF.

Uso (desde la raíz del repositorio)::

    .venv/bin/python report/build.py            # report/informe.pdf
    .venv/bin/python report/build.py --html     # además report/informe.html
    .venv/bin/python report/build.py --require-pdf   # falla si no hay TeX
    .venv/bin/python report/build.py --outdir /tmp/x # todo en /tmp/x (pruebas)

Todo lo generado queda en ``--outdir`` (por omisión ``report/``): el PDF, el
HTML y la carpeta ``build/`` con el LaTeX y las figuras. Nada más se escribe
en el árbol del repositorio, así las pruebas pueden construir en ``tmp_path``.

Pasos:

0. Ejecuta ``notebooks/02_condiciones_de_carrera.ipynb``, que deja las
   figuras del laboratorio de carreras (y sus cifras, ``race_results.json``)
   en ``<outdir>/build/lab`` (variable de entorno ``CHATLIB_FIGURES_DIR``).
1. Ejecuta el cuaderno con nbclient (directorio de trabajo ``report/``); las
   celdas ocultas generan figuras en ``<outdir>/build/figures``
   (``INFORME_BUILD_DIR``) y los listados leen el código real de ``chatlib``.
2. Revisa las salidas: un error detiene la construcción; lo escrito en stderr
   se informa aquí y no llega al PDF.
3. Exporta con nbconvert (``LatexExporter`` y la plantilla
   ``report/template/informe``), quitando las celdas con etiquetas ``hide`` /
   ``hide-input`` (``TagRemovePreprocessor``).
4. Compila con XeLaTeX en ``report/build`` hasta que las referencias cruzadas
   (índice, figuras, «página N de M») se estabilizan, y copia el PDF a
   ``report/informe.pdf``.

Sin XeLaTeX o sin pandoc el script dice qué paquetes instalar y produce igual
``informe.html``; en ese caso el código de salida es distinto de cero
solo si ni siquiera el HTML se pudo generar (o si se pidió ``--require-pdf``).
Con TeX instalado, un fallo de compilación sí es un error (código 1). Si no se
pudo generar el PDF, un ``informe.pdf`` de una construcción anterior se
renombra a ``informe.pdf.old`` (y se avisa), para que no parezca actual.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPORT_DIR = Path(__file__).resolve().parent
ROOT = REPORT_DIR.parent
NOTEBOOK = REPORT_DIR / "informe.ipynb"
LAB_NOTEBOOK = ROOT / "notebooks" / "02_condiciones_de_carrera.ipynb"
TEMPLATE_DIR = REPORT_DIR / "template"
DEBIAN_PACKAGES = "texlive-xetex texlive-fonts-recommended texlive-plain-generic pandoc"
MONTHS = ("enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre").split()

sys.path.insert(0, str(REPORT_DIR))


class Paths:
    """Dónde se escribe cada producto de la construcción (todo bajo ``outdir``)."""

    def __init__(self, outdir: Path) -> None:
        self.outdir = outdir.resolve()
        self.build = self.outdir / "build"
        self.lab = self.build / "lab"
        self.pdf = self.outdir / "informe.pdf"
        self.html = self.outdir / "informe.html"

    def show(self, path: Path) -> str:
        """Ruta legible: relativa a la raíz del repositorio si está dentro."""
        return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def log(message: str) -> None:
    print(f"[informe] {message}", flush=True)


def spanish_date(day: dt.date) -> str:
    """«27 de noviembre de 2026»."""
    return f"{day.day} de {MONTHS[day.month - 1]} de {day.year}"


def missing_tools() -> list[str]:
    """Programas externos que faltan para el PDF.

    ``INFORME_PRETEND_NO_TEX=1`` simula una máquina sin TeX (lo usan las pruebas
    para verificar la versión HTML de respaldo).
    """
    if os.environ.get("INFORME_PRETEND_NO_TEX") == "1":
        return ["xelatex"]
    return [tool for tool in ("xelatex", "pandoc") if shutil.which(tool) is None]


def resolve_metadata(nb) -> None:
    """Completa ``metadata.informe``: una fecha de entrega vacía es la de hoy."""
    info = nb.metadata.setdefault("informe", {})
    if not info.get("due_date"):
        info["due_date"] = spanish_date(dt.date.today())


def execute(nb, timeout: int, cwd: Path = REPORT_DIR) -> None:
    """Ejecuta el cuaderno con el directorio de trabajo ``cwd`` (por omisión ``report/``)."""
    from nbclient import NotebookClient

    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
        allow_errors=False,
        # El núcleo local habla por TCP en 127.0.0.1: su aviso de «running over
        # TCP without encryption» no aporta nada aquí y ensucia la salida.
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    )
    client.execute()


def check_outputs(nb) -> None:
    """Rechaza errores; quita (e informa) lo que se haya escrito en stderr."""
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                problems.append(f"celda {index}: {output.ename}: {output.evalue}")
                continue
            if output.output_type == "stream" and output.name == "stderr":
                log(f"aviso: la celda {index} escribió en stderr (no va al informe):")
                for line in output.text.rstrip().splitlines():
                    log(f"    {line}")
                continue
            kept.append(output)
        cell.outputs = kept
    if problems:
        raise RuntimeError("el cuaderno terminó con errores:\n" + "\n".join(problems))


def _text_slots(nb):
    """Cada texto del cuaderno que puede llevar citas, en orden: (contenedor, clave)."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            yield cell, "source"
        elif cell.cell_type == "code":
            for output in cell.get("outputs", []):
                data = output.get("data", {})
                for mime in ("text/markdown", "text/latex", "text/html"):
                    if mime in data:
                        yield data, mime


def number_citations(nb) -> int:
    """``[@clave]`` → ``[n]`` por orden de primera cita, y la lista de referencias en su marca."""
    import references

    slots = list(_text_slots(nb))
    order = references.numbering([container[key] for container, key in slots])
    marked = 0
    for container, key in slots:
        text = references.replace_citations(container[key], order)
        if references.REFERENCES_MARK in text:
            text = text.replace(references.REFERENCES_MARK, references.reference_list(order))
            marked += 1
        container[key] = text
    if marked != 1:
        raise RuntimeError(f"la marca {references.REFERENCES_MARK!r} debe aparecer una vez (hay {marked})")
    return len(order)


def hyphenation_words(nb) -> str:
    """Excepciones de guionado castellano para el texto del informe."""
    from hyphenation_es import hyphenation_list

    texts = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            texts.append(cell.source)
        elif cell.cell_type == "code":
            for output in cell.get("outputs", []):
                data = output.get("data", {})
                texts.append(data.get("text/markdown", ""))
                texts.append(data.get("text/x-informe-prose", ""))
    return hyphenation_list(texts)


def _tag_remover():
    from nbconvert.preprocessors import TagRemovePreprocessor

    return TagRemovePreprocessor(
        remove_cell_tags={"hide", "remove_cell"},
        remove_input_tags={"hide-input", "remove_input"},
        remove_all_outputs_tags={"hide-output", "remove_output"},
        enabled=True,
    )


def export_latex(nb, paths: Paths) -> Path:
    """Escribe ``build/informe.tex`` (y los archivos de salida) con la plantilla propia."""
    from nbconvert import LatexExporter

    exporter = LatexExporter(
        template_name="informe",
        extra_template_basedirs=[str(TEMPLATE_DIR)],
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    exporter.register_preprocessor(_tag_remover(), enabled=True)
    resources = {
        "metadata": {"name": "informe", "path": str(REPORT_DIR)},
        "output_files_dir": "informe_files",
        "informe_hyphenation": hyphenation_words(nb),
    }
    body, resources = exporter.from_notebook_node(nb, resources=resources)
    tex = paths.build / "informe.tex"
    tex.write_text(body, encoding="utf-8")
    for name, data in resources.get("outputs", {}).items():
        target = paths.build / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return tex


def run_xelatex(tex: Path, max_runs: int = 4) -> Path:
    """Compila hasta que no haya referencias pendientes; devuelve el PDF."""
    logfile = tex.with_suffix(".log")
    # Un .aux a medio escribir por una compilación fallida rompe la siguiente.
    for suffix in (".aux", ".toc", ".lof", ".lot", ".lol", ".out"):
        tex.with_suffix(suffix).unlink(missing_ok=True)
    for run in range(1, max_runs + 1):
        proc = subprocess.run(
            ["xelatex", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error", tex.name],
            cwd=tex.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        if proc.returncode != 0:
            errors = [line for line in proc.stdout.splitlines() if line.startswith(("!", "./", "l."))]
            tail = "\n".join(errors[-15:] or proc.stdout.splitlines()[-30:])
            raise RuntimeError(f"xelatex falló (pasada {run}); ver {logfile}:\n{tail}")
        text = logfile.read_text(encoding="utf-8", errors="replace")
        if run >= 2 and not re.search(r"Rerun to get|Label\(s\) may have changed|undefined references", text):
            break
    report_log(logfile)
    return tex.with_suffix(".pdf")


def report_log(logfile: Path) -> None:
    """Resume los defectos tipográficos que quedan (cajas desbordadas, glifos)."""
    text = logfile.read_text(encoding="utf-8", errors="replace")
    overfull = re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)[^\n]*", text)
    big = [float(x) for x in overfull if float(x) > 2.0]
    overfull_v = re.findall(r"Overfull \\vbox \(([\d.]+)pt too high\)", text)
    if overfull_v:
        log(
            f"aviso: {len(overfull_v)} páginas desbordadas verticalmente (se pierde contenido): "
            + ", ".join(f"{x} pt" for x in overfull_v)
        )
    missing = sorted(set(re.findall(r"Missing character: There is no (.) ", text)))
    undefined = re.findall(r"LaTeX Warning: (?:Reference|Citation) `([^']+)' .* undefined", text)
    log(f"cajas desbordadas: {len(overfull)} (más de 2 pt: {len(big)})")
    if missing:
        log(f"aviso: glifos ausentes en la fuente: {' '.join(missing)}")
    if undefined:
        log(f"aviso: referencias sin definir: {', '.join(sorted(set(undefined)))}")


def export_html(nb, paths: Paths) -> Path:
    """Versión HTML (sin código de celdas), para cuando no hay TeX."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        template_name="lab", exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True
    )
    exporter.register_preprocessor(_tag_remover(), enabled=True)
    nb = copy.deepcopy(nb)
    # Las referencias cruzadas de LaTeX no existen en HTML: se quitan.
    latex_only = re.compile(r"\\(?:ref|label)\{[^}]*\}|\\(?:clearpage|appendix|FloatBarrier)\b")
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = latex_only.sub("", cell.source)
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "text/markdown" in data:
                data["text/markdown"] = latex_only.sub("", data["text/markdown"])
    info = nb.metadata.get("informe", {})
    cover = [f"# {info.get('title', 'Informe')}", ""]
    for key in ("institution", "faculty", "department", "course"):
        if info.get(key):
            cover.append(f"**{info[key]}**  ")
    cover.append("")
    if info.get("authors"):
        label = "Integrantes" if len(info["authors"]) > 1 else "Integrante"
        cover.append(f"**{label}:** " + ", ".join(info["authors"]) + "  ")
    for entry in info.get("staff", []):
        cover.append(f"**{entry['role']}:** " + ", ".join(entry["names"]) + "  ")
    for key, label in (("semester", "Semestre"), ("due_date", "Fecha de entrega")):
        if info.get(key):
            cover.append(f"**{label}:** {info[key]}  ")
    import nbformat

    nb.cells.insert(0, nbformat.v4.new_markdown_cell("\n".join(cover)))
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": "informe"}})
    paths.html.write_text(body, encoding="utf-8")
    return paths.html


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", action="store_true", help="generar también report/informe.html")
    parser.add_argument(
        "--require-pdf", action="store_true", help="código de salida 1 si no se pudo generar el PDF"
    )
    parser.add_argument("--timeout", type=int, default=600, help="segundos por celda")
    parser.add_argument(
        "--outdir", type=Path, default=REPORT_DIR, help="carpeta de salida (por omisión report/)"
    )
    args = parser.parse_args(argv)
    paths = Paths(args.outdir)

    paths.build.mkdir(parents=True, exist_ok=True)
    # Varias personas (o pruebas) pueden construir a la vez en la misma carpeta:
    # un candado de archivo las pone en fila para que no choquen en build/.
    with open(paths.build / ".build.lock", "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows
            pass
        return build(args, paths)


def retire_stale_pdf(paths: Paths) -> None:
    """Un PDF de una construcción anterior no debe parecer el resultado de esta."""
    if paths.pdf.exists():
        old = paths.pdf.with_name(paths.pdf.name + ".old")
        paths.pdf.replace(old)
        log(f"el PDF anterior se renombró a {paths.show(old)}: no corresponde a esta construcción")


def build(args: argparse.Namespace, paths: Paths) -> int:
    """Ejecuta el cuaderno y genera el PDF (o el HTML de respaldo)."""
    import nbformat

    started = time.monotonic()
    for sub in ("figures", "informe_files", "lab"):
        shutil.rmtree(paths.build / sub, ignore_errors=True)
    (paths.build / "figures").mkdir(parents=True)
    paths.lab.mkdir(parents=True)
    # Los núcleos heredan el entorno: así saben dónde escribir y leer figuras.
    os.environ["CHATLIB_FIGURES_DIR"] = str(paths.lab)
    os.environ["INFORME_BUILD_DIR"] = str(paths.build)

    # El laboratorio de carreras genera las figuras race_*.png que el informe incluye.
    lab = nbformat.read(LAB_NOTEBOOK, as_version=4)
    log(f"ejecutando {LAB_NOTEBOOK.relative_to(ROOT)} …")
    try:
        execute(lab, args.timeout, cwd=LAB_NOTEBOOK.parent)
    except Exception as exc:  # noqa: BLE001 - se informa y se sale con error
        log(f"ERROR al ejecutar el laboratorio de carreras: {exc}")
        retire_stale_pdf(paths)
        return 1
    nbformat.write(lab, paths.build / f"{LAB_NOTEBOOK.stem}.executed.ipynb")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    resolve_metadata(nb)
    log(f"ejecutando {NOTEBOOK.relative_to(ROOT)} …")
    try:
        execute(nb, args.timeout)
        check_outputs(nb)
        log(f"referencias citadas: {number_citations(nb)}")
    except Exception as exc:  # noqa: BLE001 - se informa y se sale con error
        log(f"ERROR al ejecutar el cuaderno: {exc}")
        retire_stale_pdf(paths)
        return 1
    nbformat.write(nb, paths.build / "informe.executed.ipynb")
    log(f"cuaderno ejecutado en {time.monotonic() - started:.1f} s")

    pdf_ok = False
    missing = missing_tools()
    if missing:
        log(f"ERROR: falta {', '.join(missing)}; no se puede generar el PDF.")
        log(f"En Debian/Ubuntu instale: sudo apt-get install {DEBIAN_PACKAGES}")
        log(f"Se genera igualmente la versión HTML: {paths.show(paths.html)}")
    else:
        try:
            tex = export_latex(nb, paths)
            log(f"LaTeX escrito en {paths.show(tex)}; compilando con xelatex …")
            pdf = run_xelatex(tex)
            shutil.copyfile(pdf, paths.pdf)
            pdf_ok = True
            log(f"PDF listo: {paths.show(paths.pdf)} ({time.monotonic() - started:.1f} s en total)")
        except Exception as exc:  # noqa: BLE001
            log(f"ERROR al generar el PDF: {exc}")
    if not pdf_ok:
        retire_stale_pdf(paths)

    if args.html or not pdf_ok:
        try:
            html = export_html(nb, paths)
            log(f"HTML listo: {paths.show(html)}")
        except Exception as exc:  # noqa: BLE001
            log(f"ERROR: tampoco se pudo generar el HTML: {exc}")
            return 1
    if not pdf_ok and (args.require_pdf or not missing):
        # Con TeX instalado, un PDF fallido es un error de verdad.
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
