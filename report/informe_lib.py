"""Ayudas del cuaderno del informe: figuras con leyenda, listados y terminales.

Cada función devuelve (y muestra) un «bundle» con varias representaciones:
``text/latex`` para el PDF (la plantilla lo inserta tal cual), ``text/html``
para la versión HTML y ``text/plain`` como respaldo. Así el cuaderno no tiene
LaTeX pegado a mano y los listados salen siempre del código real.
"""

from __future__ import annotations

import base64
import html
import importlib
import inspect
import os
import re
import shutil
import textwrap
from pathlib import Path

from IPython.display import Markdown, display

REPORT_DIR = Path(__file__).resolve().parent
ROOT = REPORT_DIR.parent
# report/build.py elige la carpeta (``--outdir``) y la pasa por el entorno.
BUILD_DIR = Path(os.environ.get("INFORME_BUILD_DIR") or REPORT_DIR / "build")
FIGURES_DIR = BUILD_DIR / "figures"
LAB_FIGURES_DIR = Path(os.environ.get("CHATLIB_FIGURES_DIR") or REPORT_DIR / "figures")

_counters = {"figure": 0, "listing": 0}
SHORT_LISTING_LINES = 24
"""Hasta este largo un listado va entero en una página."""


def _show(bundle: dict[str, str]) -> None:
    display(bundle, raw=True)


def prose(markdown_text: str) -> None:
    """Texto calculado durante la construcción (pasa por pandoc como el resto)."""
    display(Markdown(textwrap.dedent(markdown_text).strip()))


def _latex_escape(text: str) -> str:
    """Escapa texto plano para LaTeX (leyendas y nombres de archivo)."""
    repl = {
        "\\": r"\textbackslash{}",
        "{": r"\{",
        "}": r"\}",
        "#": r"\#",
        "$": r"\$",
        "%": r"\%",
        "&": r"\&",
        "_": r"\_",
        "^": r"\^{}",
        "~": r"\textasciitilde{}",
        "\u202f": r"\,",
        "\u00a0": "~",
    }
    return "".join(repl.get(ch, ch) for ch in text)


def _caption_latex(caption: str) -> str:
    """Leyenda en markdown mínimo: `código`, *itálica* y **negrita** → LaTeX; ``\\ref{…}`` pasa tal cual."""
    parts = re.split(r"(`[^`]+`|\\ref\{[^}]*\})", caption)
    out = []
    for part in parts:
        if part.startswith("\\ref{"):
            out.append(part)
        elif part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(r"\texttt{" + _latex_escape(part[1:-1]) + "}")
        else:
            esc = _latex_escape(part)
            esc = re.sub(r"\*\*([^*]+)\*\*", r"\\textbf{\1}", esc)
            esc = re.sub(r"\*([^*]+)\*", r"\\emph{\1}", esc)
            out.append(esc)
    return "".join(out)


def _caption_html(caption: str) -> str:
    esc = html.escape(re.sub(r"\\ref\{[^}]*\}", "", caption))
    esc = re.sub(r"`([^`]+)`", r"<code>\1</code>", esc)
    return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", esc)


def figure(
    path: str | Path,
    caption: str,
    *,
    label: str | None = None,
    width: float = 0.92,
    short: str | None = None,
    placement: str = "htbp",
    max_height: float = 0.62,
) -> None:
    """Inserta una imagen ya existente como figura numerada con leyenda.

    Un PDF (vectorial, dibujado al ancho impreso por ``chatlib.lab.figures``) se
    inserta a su tamaño natural, sin escalar, para que su letra mida en papel lo
    que se fijó al dibujarlo; ``width`` y ``max_height`` solo acotan imágenes PNG.
    """
    src = Path(path)
    if not src.is_absolute():
        src = (REPORT_DIR / src).resolve()
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    dst = FIGURES_DIR / src.name
    if src != dst:
        shutil.copyfile(src, dst)
    _counters["figure"] += 1
    label = label or f"fig:{src.stem}"
    short_tex = f"[{_caption_latex(short)}]" if short else ""
    size = (
        ""
        if dst.suffix == ".pdf"
        else f"[width={width}\\linewidth,height={max_height}\\textheight,keepaspectratio]"
    )
    latex = (
        f"\\begin{{figure}}[{placement}]\n\\centering\n"
        f"\\includegraphics{size}"
        f"{{figures/{dst.name}}}\n"
        f"\\caption{short_tex}{{{_caption_latex(caption)}}}\\label{{{label}}}\n\\end{{figure}}\n"
    )
    preview = dst.with_suffix(".png")
    image = (
        f'<img style="max-width:{int(width * 100)}%" '
        f'src="data:image/png;base64,{base64.b64encode(preview.read_bytes()).decode("ascii")}"/>'
        if preview.exists()
        else f"<p>[{html.escape(dst.name)}]</p>"
    )
    html_fig = (
        f'<figure style="text-align:center">{image}<figcaption><b>Figura {_counters["figure"]}:</b> '
        f"{_caption_html(caption)}</figcaption></figure>"
    )
    _show(
        {
            "text/latex": latex,
            "text/html": html_fig,
            "text/plain": f"[Figura {_counters['figure']}: {caption}]",
        }
    )


def save_figure(fig, name: str, caption: str, **kwargs) -> None:
    """Guarda una figura de matplotlib (PDF vectorial y PNG de vista previa) y la inserta.

    Pasa por ``chatlib.lab.figures.save``, que rechaza letra bajo 8 pt: la figura
    debe venir dibujada a su ancho impreso.
    """
    from chatlib.lab import figures

    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    pdf, _png = figures.save(fig, FIGURES_DIR / name, formats=("pdf", "png"))
    figure(pdf, caption, **kwargs)


def lab_figure(name: str, caption: str, **kwargs) -> None:
    """Figura del laboratorio de carreras (``race_<name>.pdf``, generada por el cuaderno 02)."""
    path = LAB_FIGURES_DIR / f"race_{name}.pdf"
    if not path.exists():
        raise FileNotFoundError(f"falta {path}: ¿se ejecutó notebooks/02_condiciones_de_carrera.ipynb?")
    png = path.with_suffix(".png")
    if png.exists():
        FIGURES_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, FIGURES_DIR / png.name)
    kwargs.setdefault("label", f"fig:race-{name}")
    figure(path, caption, **kwargs)


# --- Listados de código --------------------------------------------------------


def _highlight(code: str, lexer_name: str = "python") -> str:
    """Código resaltado con las mismas macros ``\\PY`` que define nbconvert."""
    from pygments import highlight
    from pygments.formatters import LatexFormatter
    from pygments.lexers import get_lexer_by_name

    lexer = get_lexer_by_name(lexer_name, stripnl=False, ensurenl=True)
    out = highlight(code, lexer, LatexFormatter(nowrap=True, commandprefix="PY"))
    return out.rstrip("\n")


def _listing_bundle(code: str, caption: str, first_line: int, source_label: str, label: str | None) -> None:
    _counters["listing"] += 1
    label_tex = f"\\label{{{label}}}" if label else ""
    # Un listado corto no se parte entre páginas (va en una minipage); uno largo sí.
    short = code.count("\n") <= SHORT_LISTING_LINES
    open_, close = (
        (
            "\\par\\noindent\\begin{minipage}{\\linewidth}\\setlength{\\parskip}{0pt}\n",
            "\\end{minipage}\\par\\medskip\n",
        )
        if short
        else ("\\begingroup\\setlength{\\parskip}{0pt}\n", "\\endgroup\n")
    )
    latex = (
        open_ + f"\\captionof{{listado}}{{{_caption_latex(caption)}}}{label_tex}\n"
        f"\\begin{{InformeCode}}[firstnumber={first_line}, "
        f"label={{\\sffamily\\scriptsize {_latex_escape(source_label)}}}]\n"
        f"{_highlight(code)}\n\\end{{InformeCode}}\n" + close
    )
    html_block = (
        f"<p><b>Listado {_counters['listing']}:</b> {_caption_html(caption)} "
        f"<small>({html.escape(source_label)})</small></p><pre>{html.escape(code)}</pre>"
    )
    _show({"text/latex": latex, "text/html": html_block, "text/plain": code})


def lookup(qualified: str):
    """El objeto ``módulo.Clase.método`` (p. ej. ``chatlib.server.Session.run``), o un error claro.

    Los listados del informe se piden por nombre: si el código se movió o se
    renombró, la construcción se detiene aquí diciendo qué falta, en vez de
    mostrar código viejo o un listado vacío.
    """
    parts = qualified.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                raise LookupError(
                    f"el informe muestra {qualified!r}, pero {'.'.join(parts[:cut])} ya no tiene {attr!r}: "
                    "el código cambió; actualice report/informe.ipynb (sección 3)"
                )
            obj = getattr(obj, attr)
        return obj
    raise LookupError(f"el informe muestra {qualified!r}, pero no existe ningún módulo {parts[0]!r}")


def listing(obj, caption: str, *, label: str | None = None) -> None:
    """Listado de una función o clase leída del código real con ``inspect``.

    ``obj`` puede ser el objeto o su nombre completo (``"chatlib.bank.Bank.transfer"``).
    """
    if isinstance(obj, str):
        obj = lookup(obj)
    lines, start = inspect.getsourcelines(obj)
    path = Path(inspect.getsourcefile(obj)).resolve()
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    code = "".join(lines)
    end = start + len(lines) - 1
    _listing_bundle(code, caption, start, f"{rel}, líneas {start}–{end}", label)


def source_lines(path: str | Path) -> list[str]:
    return (ROOT / path).read_text(encoding="utf-8").splitlines(keepends=True)


def listing_file(path: str | Path, caption: str, *, label: str | None = None) -> None:
    """Listado de un archivo completo (apéndice)."""
    lines = source_lines(path)
    _listing_bundle("".join(lines), caption, 1, f"{path}, {len(lines)} líneas", label)


def terminal(lines: list[str], caption: str | None = None, *, title: str | None = None) -> None:
    """Texto de consola en un recuadro de ancho fijo (sin numerar)."""
    text = "\n".join(lines)
    head = f"\\captionof{{listado}}{{{_caption_latex(caption)}}}\n" if caption else ""
    label = f"[label={{\\sffamily\\scriptsize {_latex_escape(title)}}}]" if title else ""
    # Una consola corta no se parte entre páginas: va entera en una minipage.
    latex = (
        "\\par\\noindent\\begin{minipage}{\\linewidth}\\setlength{\\parskip}{0pt}\n"
        + head
        + f"\\begin{{InformeTerminal}}{label}\n{_highlight(text, 'text')}\n\\end{{InformeTerminal}}\n"
        "\\end{minipage}\\par\\medskip\n"
    )
    if caption:
        _counters["listing"] += 1
    html_block = (
        f"<p><b>{html.escape(title or '')}</b></p>" if title else ""
    ) + f"<pre>{html.escape(text)}</pre>"
    _show({"text/latex": latex, "text/html": html_block, "text/plain": text})


def latex(raw: str, html_text: str = "") -> None:
    """LaTeX crudo para el PDF (con alternativa HTML opcional)."""
    _show({"text/latex": raw, "text/html": html_text, "text/plain": ""})


def table(
    header: list[str],
    rows: list[list[str]],
    caption: str,
    *,
    label: str,
    spec: str,
    placement: str = "htbp",
    size: str = "small",
) -> None:
    """Tabla flotante que no se parte entre páginas (booktabs), con leyenda arriba.

    ``spec`` es la especificación de columnas de ``tabular`` (por ejemplo
    ``p{0.6\\linewidth}r``). Las celdas admiten `código`, *itálica* y ``\\ref``.
    """
    body = " \\\\\n".join(" & ".join(_caption_latex(c) for c in row) for row in rows)
    head = " & ".join(f"\\textbf{{{_caption_latex(h)}}}" for h in header)
    latex = (
        f"\\begin{{table}}[{placement}]\n\\centering\\{size}\n"
        f"\\caption{{{_caption_latex(caption)}}}\\label{{{label}}}\n"
        f"\\begin{{tabular}}{{{spec}}}\n\\toprule\n{head} \\\\\n\\midrule\n{body} \\\\\n"
        "\\bottomrule\n\\end{tabular}\n\\end{table}\n"
    )
    cells = lambda r, tag: "".join(f"<{tag}>{_caption_html(c)}</{tag}>" for c in r)  # noqa: E731
    html_table = (
        f"<table><caption>{_caption_html(caption)}</caption><tr>{cells(header, 'th')}</tr>"
        + "".join(f"<tr>{cells(r, 'td')}</tr>" for r in rows)
        + "</table>"
    )
    _show({"text/latex": latex, "text/html": html_table, "text/plain": caption})


# --- Terminales de la sesión real ------------------------------------------------

TERMINAL_COLORS = {
    "me": "informeverde",
    "private": "informemorado",
    "bank": "informenaranjo",
    "server": "informeazul",
}


def _terminal_kind(line: str) -> str | None:
    """Tipo de línea para el color (mismas reglas que las terminales del cuaderno 01)."""
    if line.startswith("Me: "):
        return "me"
    if " (private): " in line:
        return "private"
    if any(word in line for word in ("transferred", "dollars", "funds", "balance")):
        return "bank"
    if line.startswith("[SERVER]") or line.startswith("Welcome") or line.startswith("You have been"):
        return "server"
    return None


def _terminal_body(lines: list[str]) -> str:
    """Líneas para un entorno ``InformeTerminal`` (``commandchars``), coloreadas por tipo."""
    out = []
    for line in lines:
        esc = "".join({"\\": "\\textbackslash{}", "{": "\\{", "}": "\\}"}.get(ch, ch) for ch in line)
        kind = _terminal_kind(line)
        out.append(f"\\textcolor{{{TERMINAL_COLORS[kind]}}}{{{esc}}}" if kind else esc)
    return "\n".join(out)


def terminals(
    panels: list[tuple[str, list[str]]],
    caption: str,
    *,
    label: str,
    short: str | None = None,
    columns: list[list[int]] | None = None,
) -> None:
    """Figura con varias terminales reales en dos columnas: texto oscuro sobre fondo claro, 8 pt.

    ``columns`` dice qué paneles (por índice) van apilados en cada columna; por
    omisión se alternan. El texto queda como texto en el PDF (se puede buscar y
    copiar) y conserva los números tal como los vio cada usuario.
    """
    _counters["figure"] += 1
    columns = columns or [list(range(0, len(panels), 2)), list(range(1, len(panels), 2))]
    blocks = []
    for column in columns:
        stacked = []
        for index in column:
            title, lines = panels[index]
            stacked.append(
                f"\\begin{{InformeTerminal}}[label={{\\sffamily\\scriptsize {_latex_escape(title)}}}]\n"
                f"{_terminal_body(lines)}\n\\end{{InformeTerminal}}"
            )
        blocks.append(
            "\\begin{minipage}[t]{0.485\\linewidth}\\vspace{0pt}\n"
            + "\n\\smallskip\n".join(stacked)
            + "\n\\end{minipage}"
        )
    short_tex = f"[{_caption_latex(short)}]" if short else ""
    latex = (
        "\\begin{figure}[tbp]\n\\centering\n"
        + "\\hfill\n".join(blocks)
        + f"\n\\caption{short_tex}{{{_caption_latex(caption)}}}\\label{{{label}}}\n\\end{{figure}}\n"
    )
    html_block = (
        "".join(
            f"<p><b>{html.escape(title)}</b></p><pre>{html.escape(chr(10).join(lines))}</pre>"
            for title, lines in panels
        )
        + f"<p><b>Figura {_counters['figure']}:</b> {_caption_html(caption)}</p>"
    )
    _show({"text/latex": latex, "text/html": html_block, "text/plain": caption})
