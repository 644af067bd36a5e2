"""Ayudas del cuaderno del informe: figuras con leyenda, listados y terminales.

Cada función devuelve (y muestra) un «bundle» con varias representaciones:
``text/latex`` para el PDF (la plantilla lo inserta tal cual), ``text/html``
para la versión HTML y ``text/plain`` como respaldo. Así el cuaderno no tiene
LaTeX pegado a mano y los listados salen siempre del código real.
"""

from __future__ import annotations

import base64
import html
import inspect
import re
import shutil
import textwrap
from pathlib import Path

from IPython.display import Markdown, display

REPORT_DIR = Path(__file__).resolve().parent
ROOT = REPORT_DIR.parent
BUILD_DIR = REPORT_DIR / "build"
FIGURES_DIR = BUILD_DIR / "figures"

_counters = {"figure": 0, "listing": 0}


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
    """Inserta una imagen ya existente como figura numerada con leyenda."""
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
    latex = (
        f"\\begin{{figure}}[{placement}]\n\\centering\n"
        f"\\includegraphics[width={width}\\linewidth,height={max_height}\\textheight,keepaspectratio]"
        f"{{figures/{dst.name}}}\n"
        f"\\caption{short_tex}{{{_caption_latex(caption)}}}\\label{{{label}}}\n\\end{{figure}}\n"
    )
    data = base64.b64encode(dst.read_bytes()).decode("ascii")
    html_fig = (
        f'<figure style="text-align:center"><img style="max-width:{int(width * 100)}%" '
        f'src="data:image/png;base64,{data}"/><figcaption><b>Figura {_counters["figure"]}:</b> '
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
    """Guarda una figura de matplotlib como PNG (200 dpi) y la inserta con leyenda."""
    import matplotlib.pyplot as plt

    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    path = FIGURES_DIR / f"{name}.png"
    fig.savefig(path, dpi=200, bbox_inches="tight", facecolor="white")
    plt.close(fig)
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
    latex = (
        "\\begingroup\\setlength{\\parskip}{0pt}\n"
        f"\\captionof{{listado}}{{{_caption_latex(caption)}}}{label_tex}\n"
        f"\\begin{{InformeCode}}[firstnumber={first_line}, "
        f"label={{\\sffamily\\scriptsize {_latex_escape(source_label)}}}]\n"
        f"{_highlight(code)}\n\\end{{InformeCode}}\n\\endgroup\n"
    )
    html_block = (
        f"<p><b>Listado {_counters['listing']}:</b> {_caption_html(caption)} "
        f"<small>({html.escape(source_label)})</small></p><pre>{html.escape(code)}</pre>"
    )
    _show({"text/latex": latex, "text/html": html_block, "text/plain": code})


def listing(obj, caption: str, *, label: str | None = None) -> None:
    """Listado de una función o clase leída del código real con ``inspect``."""
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
    header: list[str], rows: list[list[str]], caption: str, *, label: str, spec: str, placement: str = "htbp"
) -> None:
    """Tabla flotante que no se parte entre páginas (booktabs), con leyenda arriba.

    ``spec`` es la especificación de columnas de ``tabular`` (por ejemplo
    ``p{0.6\\linewidth}r``). Las celdas admiten `código`, *itálica* y ``\\ref``.
    """
    body = " \\\\\n".join(" & ".join(_caption_latex(c) for c in row) for row in rows)
    head = " & ".join(f"\\textbf{{{_caption_latex(h)}}}" for h in header)
    latex = (
        f"\\begin{{table}}[{placement}]\n\\centering\\small\n"
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
