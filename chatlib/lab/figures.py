"""Un solo lugar para el aspecto de todas las figuras del proyecto (cuadernos e informe).

Cada gráfico se dibuja **al ancho con que se imprime** (el ancho de texto del
informe, A4 con márgenes de 2,5 cm, o una fracción de él) y se guarda como
vector (PDF), de modo que los tamaños de letra que aquí se fijan son los que
se leen en el papel: nunca menos de ``MIN_FONT_PT`` puntos. ``save`` lo
verifica y se niega a guardar una figura con letra más chica.

La coma decimal de los ejes la pone un formateador de matplotlib
(``decimal_comma``), no la configuración regional del sistema, que muchas
máquinas (CI, Windows) no tienen en castellano. ``format_number`` aplica la
misma regla en textos: 4096 sin espacio, 32 000 agrupado, 0,25 con coma.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "COLORS",
    "MIN_FONT_PT",
    "TEXT_WIDTH_IN",
    "decimal_comma",
    "format_number",
    "new_figure",
    "save",
    "small_fonts",
    "style",
]

TEXT_WIDTH_IN = 16.0 / 2.54
"""Ancho de texto del informe en pulgadas: A4 (21 cm) menos dos márgenes de 2,5 cm."""

MIN_FONT_PT = 8.0
"""Tamaño mínimo de letra, en puntos, de cualquier texto de una figura impresa."""

BASE_FONT_PT = 8.5

COLORS = {
    "azul": "#1F3A68",
    "naranjo": "#D98C00",
    "verde": "#2A9D4B",
    "rojo": "#B03A2E",
    "morado": "#7B3FA0",
    "gris": "#5A5A5A",
    "celeste": "#4C8BC9",
}
"""Paleta común (la misma del informe)."""

THIN_SPACE = "\u202f"


def format_number(value: float, decimals: int = 0) -> str:
    """Número a la castellana: coma decimal; miles con espacio fino solo desde cinco cifras.

    >>> format_number(4096), format_number(32000), format_number(0.25, 2), format_number(-1234567.5, 1)
    ('4096', '32\u202f000', '0,25', '−1\u202f234\u202f567,5')
    """
    text = f"{abs(value):.{decimals}f}"
    whole, _, fraction = text.partition(".")
    if len(whole) >= 5:
        groups = []
        while whole:
            groups.append(whole[-3:])
            whole = whole[:-3]
        whole = THIN_SPACE.join(reversed(groups))
    sign = "\u2212" if value < 0 and float(text) != 0 else ""
    return sign + whole + ("," + fraction if fraction else "")


def style() -> None:
    """Fija tipografía y tamaños comunes (idempotente)."""
    import matplotlib

    matplotlib.rcParams.update(
        {
            "font.family": "DejaVu Sans",
            "font.size": BASE_FONT_PT,
            "axes.titlesize": 9.0,
            "axes.labelsize": BASE_FONT_PT,
            "xtick.labelsize": MIN_FONT_PT,
            "ytick.labelsize": MIN_FONT_PT,
            "legend.fontsize": MIN_FONT_PT,
            "legend.title_fontsize": MIN_FONT_PT,
            "figure.titlesize": 9.5,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.formatter.use_locale": False,
            "axes.unicode_minus": True,
            "pdf.fonttype": 42,
            "savefig.dpi": 200,
            "savefig.facecolor": "white",
            "lines.linewidth": 1.4,
            "lines.markersize": 4.5,
        }
    )


def new_figure(
    width: float = 1.0, height_in: float = 2.6, *, nrows: int = 1, ncols: int = 1, **kwargs: Any
) -> tuple[Figure, Any]:
    """``plt.subplots`` a la medida impresa: ``width`` es la fracción del ancho de texto."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    style()
    kwargs.setdefault("layout", "constrained")
    return plt.subplots(nrows, ncols, figsize=(width * TEXT_WIDTH_IN, height_in), **kwargs)


def decimal_comma(axes: Axes | Iterable[Axes], axis: str = "both", decimals: int | None = None) -> None:
    """Rótulos de los ejes con coma decimal y miles agrupados a la castellana.

    Con ``decimals=None`` usa los decimales justos para distinguir las marcas.
    Los ejes logarítmicos conservan su localizador; solo cambia el texto.
    """
    from matplotlib.ticker import FuncFormatter

    def label(value: float, _position: float | None = None) -> str:
        if decimals is not None:
            return format_number(value, decimals)
        for digits in range(0, 4):
            if abs(value - round(value, digits)) < 1e-9 * max(1.0, abs(value)):
                return format_number(value, digits)
        return format_number(value, 3)

    group: Sequence[Axes] = [axes] if not isinstance(axes, Iterable) else list(axes)
    for ax in group:
        if axis in ("x", "both"):
            ax.xaxis.set_major_formatter(FuncFormatter(label))
        if axis in ("y", "both"):
            ax.yaxis.set_major_formatter(FuncFormatter(label))


def small_fonts(fig: Figure, minimum: float = MIN_FONT_PT) -> list[tuple[str, float]]:
    """Textos visibles de ``fig`` con letra menor que ``minimum`` puntos (texto, tamaño)."""
    from matplotlib.text import Text

    fig.canvas.draw()
    found = []
    for artist in fig.findobj(Text):
        if not artist.get_visible() or not artist.get_text().strip():
            continue
        size = float(artist.get_fontsize())
        if size < minimum - 1e-6:
            found.append((artist.get_text(), size))
    return found


def save(
    fig: Figure, path: str | Path, *, formats: Sequence[str] = ("pdf",), close: bool = True
) -> list[Path]:
    """Guarda ``fig`` a su tamaño real (sin recortes que cambien la escala) en cada formato.

    Falla con ``ValueError`` si algún texto queda bajo ``MIN_FONT_PT``: una figura
    ilegible en papel es un error, no un detalle.
    """
    import matplotlib.pyplot as plt

    small = small_fonts(fig)
    if small:
        shown = ", ".join(f"{text!r} ({size:g} pt)" for text, size in small[:6])
        raise ValueError(f"texto bajo {MIN_FONT_PT:g} pt en la figura: {shown}")
    base = Path(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = base.with_suffix("." + fmt)
        fig.savefig(target, format=fmt, facecolor="white")
        written.append(target)
    if close:
        plt.close(fig)
    return written
