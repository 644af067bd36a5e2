"""Diagramas del marco teórico y de la arquitectura, dibujados con matplotlib.

Se generan al construir el informe (nada de imágenes pegadas): capas TCP/IP,
saludo de tres vías y cierre ordenado, secuencia de llamadas de los sockets de
Berkeley, encuadre de mensajes sobre un flujo de bytes y arquitectura del
servidor. Cada función devuelve una figura de matplotlib.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

BLUE = "#1F3A68"
LIGHT = "#E8EEF7"
GREY = "#5A5A5A"
ORANGE = "#D98C00"
GREEN = "#2A9D4B"
RED = "#B03A2E"
PURPLE = "#7B3FA0"
plt.rcParams.update({"font.family": "DejaVu Sans", "font.size": 8})
# Cada diagrama se dibuja al ancho con que se imprime (el ancho de texto del
# informe) y con letra de al menos 8 pt: se inserta sin escalar.
TEXT_WIDTH_IN = 16.0 / 2.54


def _canvas(width: float, height: float, xlim: float = 100, ylim: float = 100):
    """Lienzo de ``width`` × ``height`` pulgadas con coordenadas 0..xlim, 0..ylim."""
    fig, ax = plt.subplots(figsize=(width, height))
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1)
    ax.set_xlim(0, xlim)
    ax.set_ylim(0, ylim)
    ax.axis("off")
    return fig, ax


def _box(
    ax,
    x,
    y,
    w,
    h,
    text,
    *,
    fc=LIGHT,
    ec=BLUE,
    fs=8,
    bold=False,
    color="black",
    mono=False,
    radius=1.2,
    lw=1.0,
    ha="center",
    style="round",
):
    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            w,
            h,
            boxstyle=f"{style},pad=0,rounding_size={radius}" if style == "round" else f"{style},pad=0",
            fc=fc,
            ec=ec,
            lw=lw,
        )
    )
    tx = x + w / 2 if ha == "center" else x + 1.2
    ax.text(
        tx,
        y + h / 2,
        text,
        ha=ha,
        va="center",
        fontsize=fs,
        color=color,
        fontweight="bold" if bold else "normal",
        family="DejaVu Sans Mono" if mono else None,
        linespacing=1.25,
    )


def _arrow(
    ax,
    x1,
    y1,
    x2,
    y2,
    *,
    color=BLUE,
    lw=1.1,
    style="-|>",
    ls="-",
    text=None,
    fs=8,
    tcolor=None,
    toff=(0, 1.2),
    rot=None,
    mutation=9,
    ha="center",
    connection="arc3",
):
    ax.add_patch(
        FancyArrowPatch(
            (x1, y1),
            (x2, y2),
            arrowstyle=style,
            mutation_scale=mutation,
            color=color,
            lw=lw,
            linestyle=ls,
            shrinkA=0,
            shrinkB=0,
            connectionstyle=connection,
        )
    )
    if text:
        ax.text(
            (x1 + x2) / 2 + toff[0],
            (y1 + y2) / 2 + toff[1],
            text,
            fontsize=fs,
            color=tcolor or color,
            ha=ha,
            va="bottom",
            rotation=rot if rot is not None else 0,
            rotation_mode="anchor",
        )


# --- 1. Capas TCP/IP --------------------------------------------------------------


def tcpip_layers():
    """Las cuatro capas de TCP/IP, dónde está la API de sockets y el encapsulado."""
    fig, ax = _canvas(TEXT_WIDTH_IN, 2.8, 100, 50)
    layers = [
        ("Aplicación", "chat: líneas de texto UTF-8\n(protocolo propio de chatlib)", "#DCE6F5"),
        ("Transporte", "TCP: segmentos, puertos,\nconfiabilidad y orden", "#E3F1E6"),
        ("Internet", "IP: paquetes, direcciones,\nenrutamiento", "#FBEFD9"),
        ("Enlace", "Ethernet / Wi-Fi / loopback:\ntramas en el medio físico", "#F2E4F4"),
    ]
    top, h = 45, 8.2
    ys = [35.8, 21.6, 11.8, 2.0]
    for (name, desc, fc), y in zip(layers, ys, strict=False):
        _box(ax, 2, y, 13, h, name, fc=fc, bold=True, fs=8)
        _box(ax, 16, y, 25, h, desc, fc=fc, fs=8)
    # Frontera de la API de sockets (espacio de usuario / núcleo).
    yb = 32.4
    ax.plot([0.5, 97], [yb, yb], color=RED, lw=1.2, ls=(0, (4, 2)))
    ax.text(
        2,
        yb + 0.5,
        "API de sockets: socket(), bind(), connect(), send(), recv()…",
        color=RED,
        fontsize=8,
        fontweight="bold",
        va="bottom",
    )
    ax.text(97, yb + 0.5, "espacio de usuario ↑", color=RED, fontsize=8, va="bottom", ha="right")
    ax.text(97, yb - 0.6, "núcleo del sistema operativo ↓", color=RED, fontsize=8, va="top", ha="right")
    # Encapsulado a la derecha.
    x0 = 43
    rows = [
        ([("datos: «hola\\n»", 26, "#DCE6F5")], "mensaje"),
        ([("TCP", 8, "#BFE0C6"), ("datos", 18, "#DCE6F5")], "segmento"),
        ([("IP", 7, "#F6D9A8"), ("TCP", 8, "#BFE0C6"), ("datos", 18, "#DCE6F5")], "paquete"),
        (
            [
                ("Eth", 6, "#E4C6E8"),
                ("IP", 7, "#F6D9A8"),
                ("TCP", 8, "#BFE0C6"),
                ("datos", 18, "#DCE6F5"),
                ("FCS", 5, "#E4C6E8"),
            ],
            "trama",
        ),
    ]
    for i, (cells, label) in enumerate(rows):
        y = ys[i] + 2.1
        total = sum(w for _, w, _ in cells)
        x = x0 + (44 - total)
        for text, w, fc in cells:
            _box(
                ax,
                x,
                y,
                w,
                4,
                text,
                fc=fc,
                ec=GREY,
                fs=8,
                radius=0.4,
                lw=0.7,
                mono=text.startswith("datos:"),
            )
            x += w
        ax.text(x0 + 44 + 1, y + 2, label, fontsize=8, va="center", color=GREY, style="italic")
    ax.text(
        x0 + 22,
        top + 1.2,
        "Encapsulado al enviar (cada capa agrega su cabecera)",
        fontsize=8,
        ha="center",
        color=BLUE,
        fontweight="bold",
    )
    ax.text(21, top + 1.2, "Pila TCP/IP", fontsize=8, ha="center", color=BLUE, fontweight="bold")
    return fig


# --- 2. Saludo de tres vías y cierre ---------------------------------------------------


def handshake():
    """Diagrama de secuencia: conexión (SYN, SYN+ACK, ACK), datos y cierre con FIN."""
    fig, ax = _canvas(TEXT_WIDTH_IN, 4.5, 100, 100)
    ax.set_ylim(-4, 100)
    xc, xs = 35, 67
    ax.text(xc, 97, "Cliente", ha="center", fontsize=9, fontweight="bold", color=BLUE)
    ax.text(xs, 97, "Servidor", ha="center", fontsize=9, fontweight="bold", color=BLUE)
    ax.plot([xc, xc], [2, 94], color=GREY, lw=1)
    ax.plot([xs, xs], [2, 94], color=GREY, lw=1)

    def state(x, y, text, side):
        ax.text(
            x + (-1.5 if side == "l" else 1.5),
            y,
            text,
            fontsize=8,
            family="DejaVu Sans Mono",
            ha="right" if side == "l" else "left",
            va="center",
            color=PURPLE,
        )

    def call(y, text, side):
        ax.text(
            3 if side == "l" else 97,
            y,
            text,
            fontsize=8,
            family="DejaVu Sans Mono",
            ha="left" if side == "l" else "right",
            va="center",
            color=GREEN,
        )

    def msg(y1, y2, text, left_to_right=True, color=BLUE, ls="-"):
        x1, x2 = (xc, xs) if left_to_right else (xs, xc)
        _arrow(ax, x1, y1, x2, y2, color=color, ls=ls)
        ax.text((xc + xs) / 2, (y1 + y2) / 2 + 1.5, text, fontsize=8, ha="center", va="bottom", color=color)

    def section(y_top, y_bottom, title):
        ax.add_patch(
            plt.Rectangle(
                (1.5, y_bottom), 97, y_top - y_bottom, fc="none", ec="#B8C4D6", lw=0.8, ls=(0, (3, 2))
            )
        )
        ax.text(3, y_top - 2.2, title, fontsize=8, color=BLUE, fontweight="bold", va="center")

    section(93.5, 61, "Acuerdo en tres pasos (three-way handshake)")
    state(xs, 89, "LISTEN", "r")
    call(89, "listen()", "r")
    state(xc, 86, "CLOSED", "l")
    call(83, "connect()", "l")
    msg(83, 78, "SYN seq=x")
    state(xc, 80, "SYN_SENT", "l")
    state(xs, 75.5, "SYN_RCVD", "r")
    msg(75.5, 70.5, "SYN+ACK seq=y ack=x+1", left_to_right=False)
    state(xc, 68.5, "ESTABLISHED", "l")
    call(68.5, "connect() retorna", "l")
    msg(68.5, 63.5, "ACK ack=y+1")
    state(xs, 63.5, "ESTABLISHED", "r")
    # El núcleo completa el acuerdo por sí solo tras listen(); accept() solo desencola.
    call(63.5, "(en la cola)", "r")
    call(58.6, "accept() la saca de la cola", "r")

    msg(57, 53, "datos «hola\\n»", color=GREEN)
    msg(51, 47, "ACK", left_to_right=False, color=GREEN, ls=(0, (3, 2)))
    call(57, "send()", "l")
    call(53, "recv()", "r")

    section(43.5, 2, "Cierre ordenado")
    call(37, "close()", "l")
    msg(37, 32, "FIN seq=u")
    state(xc, 34.5, "FIN_WAIT_1", "l")
    msg(30, 25, "ACK ack=u+1", left_to_right=False)
    state(xs, 30, "CLOSE_WAIT", "r")
    call(27.5, "recv() → b''", "r")
    state(xc, 25, "FIN_WAIT_2", "l")
    call(20, "close()", "r")
    msg(20, 15, "FIN seq=v", left_to_right=False)
    state(xs, 18, "LAST_ACK", "r")
    state(xc, 13, "TIME_WAIT (2·MSL)", "l")
    msg(13, 8, "ACK ack=v+1")
    state(xs, 6, "CLOSED", "r")
    state(xc, 4, "CLOSED", "l")
    ax.text(
        98.5,
        -1.5,
        "verde: llamada al sistema · morado: estado TCP (RFC 9293)",
        fontsize=8,
        ha="right",
        va="top",
        color=GREY,
    )
    return fig


# --- 3. Llamadas de los sockets de Berkeley ------------------------------------------------


def berkeley_calls():
    """Secuencia de llamadas de servidor y cliente TCP y cómo se relacionan."""
    fig, ax = _canvas(TEXT_WIDTH_IN, 3.7, 100, 100)
    ax.set_ylim(4, 100)
    xs, xc, w, h = 24, 58, 18, 7
    ax.text(xs + w / 2, 97, "Servidor", ha="center", fontsize=9, fontweight="bold", color=BLUE)
    ax.text(xc + w / 2, 97, "Cliente", ha="center", fontsize=9, fontweight="bold", color=BLUE)
    server = [
        ("socket()", 86),
        ("bind()", 75),
        ("listen()", 64),
        ("accept()", 51),
        ("recv()", 38),
        ("send()", 27),
        ("close()", 8),
    ]
    client = [("socket()", 86), ("connect()", 64), ("send()", 38), ("recv()", 27), ("close()", 16)]
    # socket(), bind() y listen() no bloquean; el núcleo completa el acuerdo en
    # tres pasos después de listen() y accept() solo saca conexiones de la cola.
    notes_s = {
        "socket()": "AF_INET, SOCK_STREAM",
        "bind()": "dirección y puerto",
        "listen()": "el núcleo acepta y\nencola conexiones",
        "accept()": "saca una de la cola\n(espera si está vacía);\nsocket nuevo por cliente",
        "recv()": "espera hasta\nque lleguen bytes",
        "send()": "se repiten mientras\ndure la sesión",
        "close()": "envía FIN",
    }
    notes_c = {
        "socket()": "AF_INET, SOCK_STREAM",
        "connect()": "espera a que el\nacuerdo termine",
        "close()": "envía FIN",
    }
    for seq, x, notes, side in ((server, xs, notes_s, -1), (client, xc, notes_c, 1)):
        for i, (name, y) in enumerate(seq):
            _box(
                ax,
                x,
                y,
                w,
                h,
                name,
                mono=True,
                fs=8.5,
                bold=True,
                fc="#DCE6F5" if name not in ("recv()", "send()") else "#E3F1E6",
            )
            if name in notes:
                tx = x - 1.5 if side < 0 else x + w + 1.5
                ax.text(
                    tx,
                    y + h / 2,
                    notes[name],
                    fontsize=8,
                    color=GREY,
                    ha="right" if side < 0 else "left",
                    va="center",
                )
            if i + 1 < len(seq):
                _arrow(ax, x + w / 2, y, x + w / 2, seq[i + 1][1] + h, color=GREY, lw=0.9)
    # Relaciones entre ambos lados.
    mid = (xs + w + xc) / 2
    _arrow(ax, xc, 67.5, xs + w, 67.5, color=RED, ls=(0, (4, 2)), style="<|-|>")
    ax.text(mid, 69, "acuerdo en\ntres pasos", fontsize=8, color=RED, ha="center", va="bottom")
    _arrow(ax, xc, 41.5, xs + w, 41.5, color=GREEN, ls=(0, (4, 2)))
    ax.text(mid, 43, "petición\n(bytes)", fontsize=8, color=GREEN, ha="center")
    _arrow(ax, xs + w, 30.5, xc, 30.5, color=GREEN, ls=(0, (4, 2)))
    ax.text(mid, 32, "respuesta\n(bytes)", fontsize=8, color=GREEN, ha="center")
    _arrow(ax, xc, 19.5, xs + w, 12, color=RED, ls=(0, (4, 2)))
    ax.text(mid, 18.5, "FIN: recv()\nretorna b''", fontsize=8, color=RED, ha="center", va="bottom")
    return fig


# --- 4. Encuadre de mensajes ------------------------------------------------------------


def framing():
    """Dos líneas enviadas, tres ``recv`` con cortes arbitrarios y el reensamblado."""
    fig, ax = _canvas(TEXT_WIDTH_IN, 2.7, 100, 40)
    # El cliente envía solo su texto; el prefijo «ana: » lo agrega el servidor al difundir.
    sent = ["hola\\n", ":u\\n"]
    chunks = ["ho", "la\\n:", "u\\n"]
    cw = 2.35

    def cells(x, y, text, fc, label=None):
        tokens = []
        i = 0
        while i < len(text):
            if text[i] == "\\":
                tokens.append(text[i : i + 2])
                i += 2
            else:
                tokens.append(text[i])
                i += 1
        for t in tokens:
            _box(
                ax,
                x,
                y,
                cw,
                3.6,
                "␣" if t == " " else t,
                fc=fc if t != "\\n" else "#F6D9A8",
                ec=GREY,
                fs=8,
                mono=True,
                radius=0.2,
                lw=0.6,
            )
            x += cw
        if label:
            ax.text(x + 0.8, y + 1.8, label, fontsize=8, va="center", color=GREY)
        return x

    ax.text(
        1,
        35.5,
        "El cliente ana llama\ndos veces a send():",
        fontsize=8,
        va="center",
        color=BLUE,
        fontweight="bold",
    )
    x = 26
    for s in sent:
        x = cells(x, 34, s, "#DCE6F5") + 3
    ax.text(
        1,
        22,
        "TCP entrega un\nflujo de bytes;\nel servidor obtiene:",
        fontsize=8,
        va="center",
        color=BLUE,
        fontweight="bold",
    )
    x = 26
    for k, c in enumerate(chunks):
        x = cells(x, 20, c, "#E3F1E6", label=f"recv #{k + 1}") + 9
    ax.text(
        1,
        7.5,
        "LineBuffer.feed()\ncorta en cada \\n:",
        fontsize=8,
        va="center",
        color=BLUE,
        fontweight="bold",
    )
    x = 26
    for s in ('"hola"', '":u"'):
        _box(ax, x, 5.7, len(s) * 1.5 + 2, 3.6, s, fc="#DCE6F5", ec=BLUE, fs=8, mono=True, radius=0.5)
        x += len(s) * 1.5 + 6
    ax.text(
        x + 1,
        7.5,
        "mensajes completos, en orden; lo incompleto\n"
        "espera al próximo recv(). Luego el servidor\n"
        "difunde «ana: hola» a los demás.",
        fontsize=8,
        color=GREY,
        va="center",
    )
    _arrow(ax, 50, 32.5, 50, 25, color=GREY, lw=0.8)
    _arrow(ax, 50, 18.5, 50, 11, color=GREY, lw=0.8)
    return fig


# --- 5. Arquitectura del servidor -------------------------------------------------------------


def architecture(max_clients: int = 256, queue_limit: int = 1 << 20):
    """Hilos, sockets, buffers de salida y secciones críticas de ``chatlib.server``."""
    fig, ax = _canvas(TEXT_WIDTH_IN, 4.6, 100, 78)
    queue_text = f"{queue_limit // (1 << 20)} MiB" if queue_limit % (1 << 20) == 0 else f"{queue_limit} B"
    rows = [("ana", 46), ("beto", 30), ("fran", 6)]
    # Bucle de aceptación (arriba, centro).
    _box(
        ax,
        36,
        61.5,
        27,
        10.5,
        "hilo chatlib-accept\npoll/select: listener\n+ despertador",
        fc="#DCE6F5",
        fs=8,
    )
    ax.text(49.5, 73.2, "socket de escucha: listen() / accept()", fontsize=8, ha="center", color=BLUE)
    _box(ax, 12, 63, 19, 7.5, "hilo Flusher\nselectors: EVENT_WRITE", fc="#FFF6E5", ec=ORANGE, fs=8)
    for name, y in rows:
        # Cliente.
        _box(ax, 0.5, y + 1.5, 8.5, 8, f"cliente\n{name}", fc="#F2F2F2", ec=GREY, fs=8)
        # Outbox entre el cliente y su sesión.
        _box(ax, 12, y, 21, 7, "", fc="#FFF6E5", ec=ORANGE)
        ax.text(13, y + 5.3, "Outbox", fontsize=8, fontweight="bold", color=ORANGE, va="center")
        ax.text(
            13,
            y + 2.4,
            f"send() no bloqueante\nresto → cola ≤ {queue_text}",
            fontsize=8,
            va="center",
            color="#6b4500",
        )
        _arrow(ax, 12, y + 3.5, 9, y + 3.5, color=ORANGE, lw=1.0)
        # Sesión (un hilo por conexión).
        _box(ax, 36, y, 29, 11.5, "", fc="#E3F1E6", ec=GREEN)
        ax.text(
            37.2, y + 9.4, f"hilo Session ({name})", fontsize=8, fontweight="bold", color=GREEN, va="center"
        )
        ax.text(
            37.2,
            y + 4.3,
            "poll() con plazo → recv()\n→ LineBuffer → parse_line\n→ Batch.flush()",
            fontsize=8,
            va="center",
            color="#1c4d2a",
        )
        # recv: del cliente a su sesión, por arriba del Outbox.
        _arrow(ax, 9, y + 8.5, 36, y + 9.5, color=GREEN, lw=1.0)
        # Respuesta propia hacia su Outbox.
        _arrow(ax, 36, y + 4, 33, y + 4, color=ORANGE, lw=1.0)
    ax.text(10, 56.2, "recv()", fontsize=8, color=GREEN, ha="left", va="bottom")
    ax.text(50.5, 22, "⋮   un hilo Session por conexión", fontsize=8, ha="center", color=GREY)
    ax.text(5, 22, "⋮", fontsize=11, ha="center", color=GREY)
    _arrow(
        ax,
        49.5,
        61.5,
        49.5,
        57.5,
        color=BLUE,
        text=" accept() + Thread.start()",
        fs=8,
        toff=(0.4, -1.2),
        ha="left",
    )
    # Difusión: la sesión de ana escribe en los Outbox de los demás.
    _arrow(ax, 36, 48, 33, 35, color=ORANGE, lw=0.9)
    _arrow(ax, 36, 47.5, 33, 11, color=ORANGE, lw=0.9)
    ax.text(29.5, 22, "difusión", fontsize=8, color=ORANGE, ha="right", va="center")
    _arrow(ax, 21.5, 53, 21.5, 63, color=ORANGE, lw=0.8, ls=(0, (3, 2)))
    ax.text(22.8, 59.6, "si el socket\nse llena", fontsize=8, color=ORANGE, va="center", ha="left")
    # Estado compartido a la derecha.
    _box(ax, 71.5, 46, 28, 18, "", fc="#F4ECF7", ec=PURPLE)
    ax.text(85.5, 61.3, "ChatServer", fontsize=8, fontweight="bold", color=PURPLE, ha="center")
    ax.text(
        72.7,
        53,
        "_lock (threading.Lock)\n_names: id → Session\nmembers: tupla nueva\nen cada cambio\n"
        f"máx. {max_clients} usuarios",
        fontsize=8,
        va="center",
        family="DejaVu Sans Mono",
    )
    _box(ax, 71.5, 21, 28, 19, "", fc="#FDECEA", ec=RED)
    ax.text(85.5, 37.3, "Bank", fontsize=8, fontweight="bold", color=RED, ha="center")
    ax.text(
        72.7,
        29,
        "lock (threading.Lock)\nledger: cuenta → saldo\ntransfer(): leer,\n"
        "verificar y escribir\nen una sección crítica",
        fontsize=8,
        va="center",
        family="DejaVu Sans Mono",
    )
    _box(
        ax,
        71.5,
        6.5,
        28,
        10,
        "hilo chatlib-console\ncola acotada, una\nescritura por línea",
        fc="#F2F2F2",
        ec=GREY,
        fs=8,
    )
    # Las sesiones usan el estado compartido (secciones críticas).
    for _, y in rows:
        _arrow(ax, 65, y + 7, 71.5, 55, color=PURPLE, lw=0.7, ls=(0, (3, 2)))
        _arrow(ax, 65, y + 4, 71.5, 30.5, color=RED, lw=0.7, ls=(0, (3, 2)))
    _arrow(ax, 65, 9, 71.5, 11, color=GREY, lw=0.7, ls=(0, (3, 2)))
    ax.text(68.8, 65, "registro de\nusuarios", fontsize=8, color=PURPLE, ha="center", va="bottom")
    ax.text(85.5, 19.8, ":funds, :t", fontsize=8, color=RED, ha="center", va="top")
    ax.text(
        0.5,
        0.5,
        "Naranja: bytes hacia los clientes (camino rápido en el hilo que produce el mensaje; "
        "camino lento en el Flusher).\nVerde: bytes desde los clientes. Punteado: estado compartido, "
        "que se modifica con su lock.",
        fontsize=8,
        color=GREY,
        va="bottom",
    )
    return fig


def captured_sequence(capture, payload_limit: int = 40):
    """La captura real de ``chatlib.lab.capture`` al ancho impreso, con letra de 8 pt o más.

    Dibuja con ``plot_sequence`` (el mismo diagrama del cuaderno 00) y ajusta lo
    que el papel exige: ancho de texto, letra mínima, fases con los nombres del
    informe y, si la hay, la pausa más larga entre dos segmentos, anotada con su
    duración medida.
    """
    from chatlib.lab import figures
    from chatlib.lab.capture import plot_sequence
    from matplotlib.text import Text

    figures.style()
    segments = capture.segments
    row = min(0.19, 3.8 / max(1, len(segments)))
    fig = plot_sequence(capture, payload_limit=payload_limit, width=TEXT_WIDTH_IN, row_height=row)
    names = {"saludo": "acuerdo en tres pasos", "datos": "datos", "cierre": "cierre"}
    for text in fig.findobj(Text):
        if text.get_text().strip() and text.get_fontsize() < figures.MIN_FONT_PT:
            text.set_fontsize(figures.MIN_FONT_PT)
        if text.get_text() in names:
            text.set_text(names[text.get_text()])
        if text.get_position()[0] == 0.5 and text.get_text().strip():
            # Las banderas y números van sobre las flechas: un fondo blanco las deja leer.
            text.set_bbox({"facecolor": "white", "edgecolor": "none", "pad": 0.6})
            text.set_zorder(4)
    gap = longest_gap(segments)
    if gap is not None:
        index, ms = gap
        ax = fig.axes[0]
        ax.text(
            1.04,
            -index - 0.35,
            f"← {figures.format_number(ms, 1)} ms después del anterior",
            ha="left",
            va="center",
            fontsize=8,
            color=RED,
        )
    fig.tight_layout()
    return fig


def longest_gap(segments, minimum_ms: float = 10.0):
    """(índice de base 0, milisegundos) del segmento que llegó tras la pausa más larga, o ``None``."""
    best = None
    for index in range(1, len(segments)):
        ms = segments[index].time_ms - segments[index - 1].time_ms
        if ms >= minimum_ms and (best is None or ms > best[1]):
            best = (index, ms)
    return best


ALL = {
    "tcpip_layers": tcpip_layers,
    "handshake": handshake,
    "berkeley_calls": berkeley_calls,
    "framing": framing,
    "architecture": architecture,
}

if __name__ == "__main__":
    import sys

    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp"
    for name, fn in ALL.items():
        fn().savefig(f"{out}/{name}.png", dpi=110, bbox_inches="tight", facecolor="white")
