"""La captura de paquetes de ``chatlib.lab.capture``: el análisis de cabeceras y una sesión real.

La sesión real necesita Linux y root (o CAP_NET_RAW), como aquí y en CI; sin
eso la prueba verifica la otra rama: una captura vacía con la razón.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys
import time

import pytest
from chatlib import protocol as proto
from chatlib.lab import capture
from chatlib.lab.capture import ChatCapture, TcpPacket, capture_chat_session, parse_frame
from tests.helpers import chatlib_threads, wait_until

CAN_CAPTURE = sys.platform.startswith("linux") and os.geteuid() == 0

CLIENT = ("127.0.0.1", 40000)
SERVER = ("127.0.0.1", 5000)


def frame(
    payload: bytes = b"",
    *,
    flags: int = 0x18,
    seq: int = 7,
    ack: int = 9,
    ethertype: int = 0x0800,
    proto_: int = 6,
) -> bytes:
    """Un marco Ethernet + IPv4 + TCP como los que entrega ``lo``, con 4 bytes de relleno."""
    tcp = struct.pack("!HHIIHHHH", CLIENT[1], SERVER[1], seq, ack, (5 << 12) | flags, 65483, 0, 0)
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, proto_, 0, bytes(4), bytes(4))
    ip = ip[:12] + socket.inet_aton(CLIENT[0]) + socket.inet_aton(SERVER[0])
    return bytes(12) + struct.pack("!H", ethertype) + ip + tcp + payload + b"\0\0\0\0"


def test_parse_frame_reads_ip_and_tcp_headers() -> None:
    packet = parse_frame(frame(b"hola\n", flags=0x18, seq=123, ack=456))
    assert packet == TcpPacket(CLIENT, SERVER, 123, 456, 0x18, 65483, b"hola\n")


def test_parse_frame_ignores_what_is_not_tcp_over_ipv4() -> None:
    assert parse_frame(frame(ethertype=0x0806)) is None  # ARP
    assert parse_frame(frame(proto_=17)) is None  # UDP
    assert parse_frame(b"\0" * 20) is None


def test_flag_names_read_like_wireshark() -> None:
    assert capture.flag_names(0x02) == "SYN"
    assert capture.flag_names(0x12) == "SYN,ACK"
    assert capture.flag_names(0x18) == "PSH,ACK"
    assert capture.flag_names(0x11) == "FIN,ACK"


def test_relative_numbers_start_at_zero_and_wrap_around() -> None:
    isn_c, isn_s = 2**32 - 2, 1000
    c, s = CLIENT, SERVER
    packets = [
        TcpPacket(c, s, isn_c, 0, 0x02, 1, b""),
        TcpPacket(s, c, isn_s, isn_c + 1, 0x12, 1, b""),
        TcpPacket(c, s, (isn_c + 1) % 2**32, isn_s + 1, 0x10, 1, b""),
        TcpPacket(c, s, (isn_c + 1) % 2**32, isn_s + 1, 0x18, 1, b"abc\n"),
        TcpPacket(s, c, isn_s + 1, (isn_c + 5) % 2**32, 0x11, 1, b""),
    ]
    segments = capture._relative([(None, p) for p in packets], CLIENT)
    assert [(x.flags, x.seq, x.ack, x.length) for x in segments] == [
        ("SYN", 0, None, 0),
        ("SYN,ACK", 0, 1, 0),
        ("ACK", 1, 1, 0),
        ("PSH,ACK", 1, 1, 4),
        ("FIN,ACK", 1, 5, 0),
    ]
    assert [x.phase for x in segments] == ["saludo", "saludo", "saludo", "datos", "cierre"]
    assert [x.sender for x in segments] == ["cliente", "servidor", "cliente", "cliente", "servidor"]


def stream(segments: list[capture.Segment], sender: str) -> bytes:
    """Los bytes que envió ``sender``, reconstruidos en el orden de sus números de secuencia."""
    data = sorted((s.seq, s.payload) for s in segments if s.sender == sender and s.length)
    return b"".join(payload for _, payload in data)


def test_captures_a_whole_chat_session() -> None:
    result = capture_chat_session("ana", 50000, "Hola!")
    if not CAN_CAPTURE:
        assert not result.available and result.reason and not result.segments
        return
    assert result.available, result.reason
    assert result.complete
    segments = result.segments
    assert [(s.flags, s.seq, s.ack) for s in segments[:3]] == [
        ("SYN", 0, None),
        ("SYN,ACK", 0, 1),
        ("ACK", 1, 1),
    ]
    assert stream(segments, "cliente") == b"ana\n50000\nHola!\n:q\n"
    server_text = stream(segments, "servidor").decode()
    assert server_text.startswith(proto.WELCOME + "\n") and server_text.endswith(proto.GOODBYE + "\n")
    # Sin pérdidas en loopback: cada segmento empieza donde terminó el anterior del mismo lado.
    for side in ("cliente", "servidor"):
        mine = [s for s in segments if s.sender == side]
        for before, after in zip(mine, mine[1:], strict=False):
            consumed = before.length + (1 if {"SYN", "FIN"} & set(before.flags.split(",")) else 0)
            assert after.seq == before.seq + consumed, (before, after)
    # Cada paquete llegó dos veces (salida y entrada) y se guardó una.
    assert result.copies_dropped == len(segments) and result.frames_seen == 2 * len(segments)
    assert result.client is not None and result.server is not None
    assert result.client[1] != result.server[1]
    assert result.transcript[-1] == proto.GOODBYE
    assert segments[-1].phase == "cierre" and "FIN" in segments[-2].flags


def test_the_kernel_filter_lets_only_the_chosen_port_through() -> None:
    """Tráfico a otro puerto antes que al elegido: el primer marco que llega es del elegido."""
    with socket.create_server(("127.0.0.1", 0)) as chosen, socket.create_server(("127.0.0.1", 0)) as other:
        port = chosen.getsockname()[1]
        if not CAN_CAPTURE:
            with pytest.raises((PermissionError, AttributeError)):
                capture._open_loopback(port)
            return
        with capture._open_loopback(port) as raw:
            socket.create_connection(other.getsockname(), timeout=2).close()
            socket.create_connection(chosen.getsockname(), timeout=2).close()
            _stamp, _kind, first = next(capture._frames(raw, time.monotonic() + 5))
    packet = parse_frame(first)
    assert packet is not None and port in (packet.src[1], packet.dst[1])


def test_without_permission_the_capture_says_why_and_nothing_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(port: int) -> socket.socket:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(capture, "_open_loopback", refuse)
    result = capture_chat_session()
    assert not result.available and not result.segments and not result.complete
    assert result.reason is not None and result.reason.startswith("No se puede capturar aquí")
    assert "root o CAP_NET_RAW" in result.reason
    wait_until(lambda: not chatlib_threads(), what="the capture's server to stop")
    with pytest.raises(ValueError, match="root"):
        capture.plot_sequence(result)


def test_without_af_packet_the_capture_names_the_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(socket, "AF_PACKET", raising=False)
    result = capture_chat_session()
    assert not result.available and result.reason is not None and "solo existe en Linux" in result.reason


def test_any_other_refusal_is_reported_too(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(port: int) -> socket.socket:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(capture, "_open_loopback", refuse)
    result = capture_chat_session()
    assert not result.available and result.reason is not None and "rechazó el socket crudo" in result.reason


def sample_capture() -> ChatCapture:
    c, s = CLIENT, SERVER
    packets = [
        TcpPacket(c, s, 10, 0, 0x02, 1, b""),
        TcpPacket(s, c, 50, 11, 0x12, 1, b""),
        TcpPacket(c, s, 11, 51, 0x10, 1, b""),
        TcpPacket(c, s, 11, 51, 0x18, 1, b"a|b\n"),
    ]
    return ChatCapture(segments=capture._relative([(None, p) for p in packets], c), client=c, server=s)


def test_markdown_table_has_one_row_per_segment_and_escapes_pipes() -> None:
    table = sample_capture().to_markdown().splitlines()
    assert len(table) == 2 + 4
    assert table[0].startswith("| # | t (ms) | sentido | flags | seq | ack | len | contenido")
    assert "`a\\|b\\n`" in table[-1]


def test_sequence_diagram_draws_one_arrow_per_segment() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = capture.plot_sequence(sample_capture())
    arrows = [a for a in fig.axes[0].texts if getattr(a, "arrow_patch", None) is not None]
    labels = [t.get_text() for t in fig.axes[0].texts]
    plt.close(fig)
    assert len(arrows) == 4
    assert "SYN,ACK  seq=0 ack=1" in labels and "PSH,ACK  seq=1 ack=1 len=4" in labels
