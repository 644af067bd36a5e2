"""Los paquetes de verdad: captura la sesión más corta del chat en la interfaz de loopback.

``capture_chat_session()`` levanta un ``ChatServer`` real, abre un socket
crudo ``AF_PACKET`` sobre ``lo``, une a un usuario, envía un mensaje y sale
con ``:q``; luego retorna cada segmento TCP de esa conexión como datos
(``ChatCapture``): banderas, números de secuencia y de acuse relativos,
largo y contenido. ``plot_sequence()`` dibuja el diagrama de secuencia con
esos mismos segmentos.

Por qué ``AF_PACKET`` y no scapy: es la biblioteca estándar (ninguna
dependencia nueva), scapy en Linux usa por debajo este mismo socket, y leer
las cabeceras con ``struct`` deja a la vista cada campo que el informe
explica. El costo es que solo funciona en Linux y con privilegios (root o
``CAP_NET_RAW``); donde no se puede, la función no falla: retorna una
captura vacía con ``reason`` explicando por qué.

Un filtro BPF en el núcleo (el programa que compila ``tcpdump 'tcp port N'``)
deja pasar solo el puerto del chat, así el resto del tráfico de loopback no
llena el buffer. En loopback el núcleo entrega cada paquete dos veces a un
socket crudo: al salir (``PACKET_OUTGOING``) y al entrar. Se guarda solo la
copia entrante.
"""

from __future__ import annotations

import ctypes
import select
import socket
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chatlib import protocol as proto
from chatlib.client import ChatClient
from chatlib.server import ChatServer

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "ChatCapture",
    "Segment",
    "TcpPacket",
    "capture_chat_session",
    "parse_frame",
    "plot_sequence",
]

Address = tuple[str, int]

# Constantes de Linux que el módulo socket de Python 3.11 no exporta.
ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_ATTACH_FILTER = 26
SO_TIMESTAMP = 29
ETH_HEADER_LEN = 14
RECV_BUFFER = 1 << 16

# Banderas TCP en el orden en que se leen ("SYN,ACK", "PSH,ACK", "FIN,ACK").
TCP_FLAGS = (("SYN", 0x02), ("FIN", 0x01), ("RST", 0x04), ("PSH", 0x08), ("ACK", 0x10), ("URG", 0x20))
SYN, FIN, RST, ACK = 0x02, 0x01, 0x04, 0x10


@dataclass(frozen=True)
class TcpPacket:
    """Un segmento TCP/IPv4 tal como viaja, con los números absolutos."""

    src: Address
    dst: Address
    seq: int
    ack: int
    flags: int
    window: int
    payload: bytes


@dataclass(frozen=True)
class Segment:
    """Un segmento de la conexión capturada, visto como lo muestra Wireshark.

    ``seq`` y ``ack`` son relativos al número inicial de cada lado (el SYN
    lleva ``seq=0``); ``ack`` es ``None`` si el segmento no lleva ACK.
    ``time_ms`` cuenta desde el primer segmento, con la hora en que el núcleo
    lo entregó al socket crudo (``SO_TIMESTAMP``).
    ``phase`` es ``"saludo"``, ``"datos"`` o ``"cierre"``.
    """

    time_ms: float
    sender: str
    flags: str
    seq: int
    ack: int | None
    length: int
    payload: bytes
    window: int
    phase: str

    @property
    def receiver(self) -> str:
        return "servidor" if self.sender == "cliente" else "cliente"

    def text(self, limit: int | None = None) -> str:
        """El contenido como texto de una línea (``\\n`` visible); recortado a ``limit``."""
        shown = (
            self.payload.decode(proto.ENCODING, errors="replace").replace("\r", "\\r").replace("\n", "\\n")
        )
        if limit is not None and len(shown) > limit:
            shown = shown[: limit - 1] + "…"
        return shown


@dataclass
class ChatCapture:
    """Resultado de ``capture_chat_session``: los segmentos o la razón por la que no hay.

    ``available`` dice si se pudo capturar; si no, ``reason`` lo explica en
    una oración y ``segments`` está vacío. ``frames_seen`` cuenta las copias
    que entregó el núcleo para esta conexión y ``copies_dropped`` las copias
    salientes descartadas (en loopback, la mitad). ``kernel_drops`` son
    paquetes que el núcleo no pudo entregar al socket por falta de espacio.
    """

    segments: list[Segment] = field(default_factory=list)
    reason: str | None = None
    client: Address | None = None
    server: Address | None = None
    frames_seen: int = 0
    copies_dropped: int = 0
    kernel_drops: int = 0
    transcript: list[str] = field(default_factory=list)

    @property
    def available(self) -> bool:
        return self.reason is None

    @property
    def complete(self) -> bool:
        """Se vio el saludo de tres vías y el FIN de cada lado con su acuse."""
        return _handshake_seen(self.segments) and _closing_acked(self.segments)

    def rows(self, payload_limit: int | None = 48) -> list[dict[str, object]]:
        """Una fila por segmento: la tabla del cuaderno y del informe."""
        return [
            {
                "#": index,
                "t (ms)": round(segment.time_ms, 2),
                "sentido": "cliente → servidor" if segment.sender == "cliente" else "servidor → cliente",
                "flags": segment.flags,
                "seq": segment.seq,
                "ack": "" if segment.ack is None else segment.ack,
                "len": segment.length,
                "contenido": segment.text(payload_limit),
                "fase": segment.phase,
            }
            for index, segment in enumerate(self.segments, start=1)
        ]

    def to_markdown(self, payload_limit: int | None = 48) -> str:
        """La tabla en Markdown (GitHub/pandoc); el contenido va como código."""
        rows = self.rows(payload_limit)
        if not rows:
            return ""
        header = list(rows[0])
        numeric = {"#", "t (ms)", "seq", "ack", "len"}
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join("---:" if key in numeric else ":---" for key in header) + "|",
        ]
        for row in rows:
            cells = []
            for key in header:
                raw = row[key]
                value = (f"{raw:.2f}" if isinstance(raw, float) else str(raw)).replace("|", "\\|")
                cells.append(f"`{value}`" if key == "contenido" and value else value)
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def flag_names(flags: int) -> str:
    """``0x12`` → ``"SYN,ACK"``."""
    return ",".join(name for name, bit in TCP_FLAGS if flags & bit)


def parse_frame(frame: bytes) -> TcpPacket | None:
    """Lee Ethernet + IPv4 + TCP de un marco crudo; ``None`` si no es TCP sobre IPv4.

    En ``lo`` la cabecera Ethernet existe pero sus direcciones son ceros.
    """
    if len(frame) < ETH_HEADER_LEN + 20:
        return None
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    if ethertype != ETH_P_IP:
        return None
    ip = ETH_HEADER_LEN
    version_ihl, total_length, protocol = frame[ip], struct.unpack_from("!H", frame, ip + 2)[0], frame[ip + 9]
    ihl = (version_ihl & 0x0F) * 4
    if version_ihl >> 4 != 4 or protocol != socket.IPPROTO_TCP or len(frame) < ip + ihl + 20:
        return None
    src_ip = socket.inet_ntoa(frame[ip + 12 : ip + 16])
    dst_ip = socket.inet_ntoa(frame[ip + 16 : ip + 20])
    tcp = ip + ihl
    src_port, dst_port, seq, ack, offset_flags, window = struct.unpack_from("!HHIIHH", frame, tcp)
    data_start = tcp + (offset_flags >> 12) * 4
    # El largo real lo da IPv4: el marco puede traer relleno al final.
    payload = frame[data_start : ip + total_length]
    return TcpPacket((src_ip, src_port), (dst_ip, dst_port), seq, ack, offset_flags & 0x3F, window, payload)


def _port_filter(port: int) -> list[tuple[int, int, int, int]]:
    """Programa BPF clásico para "tcp port PORT" sobre IPv4 (lo que compila ``tcpdump -dd``).

    Con él el núcleo descarta todo el resto del tráfico de loopback antes de
    copiarlo, así otros programas no llenan el buffer del socket crudo.
    Cada instrucción es (código, salto si verdadero, salto si falso, k).
    """
    return [
        (0x28, 0, 0, 12),  # ldh [12]            ethertype
        (0x15, 0, 10, ETH_P_IP),  # jeq IPv4
        (0x30, 0, 0, 23),  # ldb [23]            protocolo IP
        (0x15, 0, 8, socket.IPPROTO_TCP),  # jeq TCP
        (0x28, 0, 0, 20),  # ldh [20]            fragmento
        (0x45, 6, 0, 0x1FFF),  # jset: fragmentos fuera
        (0xB1, 0, 0, 14),  # ldxb 4*([14]&0xf)   largo de la cabecera IP
        (0x48, 0, 0, 14),  # ldh [x+14]          puerto de origen
        (0x15, 2, 0, port),
        (0x48, 0, 0, 16),  # ldh [x+16]          puerto de destino
        (0x15, 0, 1, port),
        (0x06, 0, 0, 0x40000),  # aceptar el paquete
        (0x06, 0, 0, 0),  # descartar
    ]


def _attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    """``SO_ATTACH_FILTER``: el núcleo recibe un ``struct sock_fprog`` con un puntero."""
    instructions = b"".join(struct.pack("HBBI", *instruction) for instruction in program)
    buffer = ctypes.create_string_buffer(instructions)
    fprog = struct.pack("HP", len(program), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _open_loopback(port: int) -> socket.socket:
    """Socket crudo en ``lo`` que solo ve TCP del puerto ``port``; requiere privilegios."""
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        _attach_filter(raw, _port_filter(port))
        raw.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
        raw.bind(("lo", 0))
        # Lo que entró antes del filtro se descarta: no es de esta conexión.
        raw.setblocking(False)
        while select.select([raw], [], [], 0)[0]:
            raw.recv(RECV_BUFFER)
        # Consultar las estadísticas las pone en cero: luego cuentan solo la sesión.
        _kernel_drops(raw)
    except BaseException:
        raw.close()
        raise
    return raw


def _kernel_drops(raw: socket.socket) -> int:
    """Paquetes perdidos por buffer lleno desde la última consulta (``PACKET_STATISTICS``)."""
    _packets, drops = struct.unpack("II", raw.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    return int(drops)


def _frames(raw: socket.socket, deadline: float) -> Iterator[tuple[float | None, int, bytes]]:
    """(hora del núcleo, tipo de paquete, marco) de lo que llegue hasta ``deadline``."""
    timeval = struct.Struct("@ll")
    while (remaining := deadline - time.monotonic()) > 0:
        if not select.select([raw], [], [], remaining)[0]:
            return
        frame, ancdata, _flags, address = raw.recvmsg(RECV_BUFFER, socket.CMSG_SPACE(timeval.size))
        stamp = None
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMP and len(data) >= timeval.size:
                seconds, micros = timeval.unpack_from(data)
                stamp = seconds + micros / 1e6
        yield stamp, address[2], frame


def _handshake_seen(segments: list[Segment]) -> bool:
    return len(segments) >= 3 and [s.flags for s in segments[:3]] == ["SYN", "SYN,ACK", "ACK"]


def _closing_acked(segments: list[Segment]) -> bool:
    """Cada lado envió FIN y el otro lo acusó (``ack`` = seq del FIN + 1)."""
    for side in ("cliente", "servidor"):
        fins = [s for s in segments if s.sender == side and "FIN" in s.flags]
        if not fins:
            return False
        fin_end = fins[-1].seq + fins[-1].length + 1
        if not any(s.sender != side and s.ack is not None and s.ack >= fin_end for s in segments):
            return False
    return True


def _relative(packets: list[tuple[float | None, TcpPacket]], client: Address) -> list[Segment]:
    """Números relativos al inicial de cada sentido, y la fase de cada segmento."""
    # El primer segmento de cada lado es su SYN: su seq es el número inicial.
    initial: dict[str, int] = {}
    for _stamp, packet in packets:
        initial.setdefault("cliente" if packet.src == client else "servidor", packet.seq)
    first_stamp = next((stamp for stamp, _ in packets if stamp is not None), None)
    segments: list[Segment] = []
    closing = False
    for stamp, packet in packets:
        side = "cliente" if packet.src == client else "servidor"
        other = "servidor" if side == "cliente" else "cliente"
        closing = closing or bool(packet.flags & (FIN | RST))
        handshake = bool(packet.flags & SYN) or (len(segments) == 2 and not packet.payload and not closing)
        ack = (packet.ack - initial[other]) % (1 << 32) if packet.flags & ACK and other in initial else None
        segments.append(
            Segment(
                time_ms=0.0 if stamp is None or first_stamp is None else (stamp - first_stamp) * 1000,
                sender=side,
                flags=flag_names(packet.flags),
                seq=(packet.seq - initial[side]) % (1 << 32),
                ack=ack,
                length=len(packet.payload),
                payload=packet.payload,
                window=packet.window,
                phase="cierre" if closing else "saludo" if handshake else "datos",
            )
        )
    return segments


def _why_not(error: OSError | AttributeError) -> str:
    """La oración que explica por qué no hubo captura."""
    if isinstance(error, AttributeError) or not sys.platform.startswith("linux"):
        return (
            "No se puede capturar aquí: la captura usa un socket AF_PACKET, que solo existe en Linux "
            f"(este sistema es {sys.platform})."
        )
    if isinstance(error, PermissionError):
        return (
            "No se puede capturar aquí: abrir un socket crudo AF_PACKET requiere root o CAP_NET_RAW "
            f"({type(error).__name__}: {error})."
        )
    return f"No se puede capturar aquí: el sistema rechazó el socket crudo ({type(error).__name__}: {error})."


def capture_chat_session(
    identifier: str = "ana", balance: int = 50000, message: str = "Hola!", timeout: float = 5.0
) -> ChatCapture:
    """Captura los segmentos TCP de una sesión: unirse, enviar ``message`` y salir con ``:q``.

    Nunca lanza por falta de permisos o de plataforma: en ese caso retorna
    ``ChatCapture(reason=...)`` con ``available == False``.
    """
    result = ChatCapture()
    with ChatServer("127.0.0.1", 0, console=None) as server:
        result.server = server.address
        try:
            raw = _open_loopback(server.address[1])
        except (OSError, AttributeError) as error:
            result.reason = _why_not(error)
            return result
        with raw:
            client = ChatClient.join(server.address, identifier, balance, timeout=timeout)
            client.send(message)
            client.quit(timeout)
            result.transcript = list(client.transcript)
            packets = _collect(raw, result, timeout)
            result.kernel_drops = _kernel_drops(raw)
    if result.client is not None:
        result.segments = _relative(packets, result.client)
    return result


def _collect(raw: socket.socket, result: ChatCapture, timeout: float) -> list[tuple[float | None, TcpPacket]]:
    """Lee los marcos de la conexión hasta ver el cierre completo o vencer el plazo.

    El cliente es quien envía el primer SYN: su puerto efímero no se conoce antes.
    """
    packets: list[tuple[float | None, TcpPacket]] = []
    for stamp, packet_type, frame in _frames(raw, time.monotonic() + timeout):
        packet = parse_frame(frame)
        if packet is None or result.server not in (packet.src, packet.dst):
            continue
        result.frames_seen += 1
        if packet_type == socket.PACKET_OUTGOING:
            result.copies_dropped += 1
            continue
        if result.client is None and packet.flags & SYN and not packet.flags & ACK:
            result.client = packet.src
        packets.append((stamp, packet))
        if result.client is not None and _closing_acked(_relative(packets, result.client)):
            break
    return packets


_PHASE_COLORS = {"saludo": "#1f77b4", "datos": "#2ca02c", "cierre": "#d62728"}


def plot_sequence(
    capture: ChatCapture, payload_limit: int = 34, width: float = 8.0, row_height: float = 0.42
) -> Figure:
    """Diagrama de secuencia: una flecha por segmento capturado, con seq/ack relativos reales.

    ``row_height`` son las pulgadas por segmento: con el valor por omisión una
    sesión de unos 20 segmentos cabe en una página del informe.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    segments = capture.segments
    if not segments:
        raise ValueError("no hay segmentos que dibujar: " + (capture.reason or "captura vacía"))
    fig, ax = plt.subplots(figsize=(width, 1.0 + row_height * len(segments)))
    x = {"cliente": 0.0, "servidor": 1.0}
    bottom = -len(segments) - 0.2
    for side, where in x.items():
        ax.plot([where, where], [0.4, bottom], color="0.35", lw=1.2, zorder=1)
        ends = capture.client if side == "cliente" else capture.server
        label = f"{side}\n{ends[0]}:{ends[1]}" if ends else side
        ax.text(where, 0.6, label, ha="center", va="bottom", fontsize=9, fontweight="bold")
    for index, segment in enumerate(segments):
        # Cada flecha baja un poco: el segmento tarda en llegar al otro lado.
        y0, y1 = -index, -index - 0.7
        middle = (y0 + y1) / 2
        color = _PHASE_COLORS.get(segment.phase, "black")
        ax.annotate(
            "",
            xy=(x[segment.receiver], y1),
            xytext=(x[segment.sender], y0),
            arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.3},
        )
        numbers = f"seq={segment.seq}" + ("" if segment.ack is None else f" ack={segment.ack}")
        if segment.length:
            numbers += f" len={segment.length}"
        label = f"{segment.flags}  {numbers}"
        ax.text(0.5, y0 - 0.05, label, ha="center", va="bottom", fontsize=7.5, color=color)
        if segment.length:
            shown = segment.text(payload_limit)
            ax.text(1.04, middle, shown, ha="left", va="center", fontsize=7, family="monospace", color="0.25")
        ax.text(-0.04, middle, str(index + 1), ha="right", va="center", fontsize=7, color="0.4")
    ax.set_xlim(-0.15, 2.0)
    ax.set_ylim(bottom, 1.5)
    ax.axis("off")
    handles = [Patch(color=color, label=phase) for phase, color in _PHASE_COLORS.items()]
    ax.legend(handles=handles, loc="lower right", fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
