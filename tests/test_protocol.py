"""Pruebas de las funciones puras del protocolo: formatos exactos, validación y encuadre."""

from __future__ import annotations

import unicodedata

import pytest
from chatlib import protocol as proto
from hypothesis import given
from hypothesis import strategies as st


def test_exact_assignment_strings() -> None:
    assert proto.WELCOME == "Welcome to the best chat in the universe!"
    assert proto.GOODBYE == "You have been disconnected from the best chat in the universe!"
    assert proto.ASK_BALANCE == "[SERVER] Client: What is your balance?"
    assert (
        proto.balance_set_line(50000) == "[SERVER] Client: The balance of 50000 has been set to your account."
    )
    assert proto.connected_line("Identifier2") == "[SERVER] Client: Identifier2 connected!"
    assert proto.disconnected_line("Identifier3") == "[SERVER] Client: Identifier3 disconnected!"
    assert proto.funds_line(3000) == "[SERVER] Client: You have 3000 dollars."
    assert proto.INSUFFICIENT_FUNDS == "[SERVER] Client: You don't have sufficient funds for the transaction."
    assert proto.chat_line("Identifier3", "Hola!") == "Identifier3: Hola!"
    assert proto.EMOJIS == {":smile": ":~)", ":angry": ">:(", ":confused": ":S"}
    assert proto.is_balance_set_line(proto.balance_set_line(50000))
    assert not proto.is_balance_set_line("ana: The balance of 5 has been set to your account.")
    assert not proto.is_balance_set_line(proto.ASK_BALANCE)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("alice", "alice"), ("  Bob_2.x-y ", "Bob_2.x-y"), ("a" * 24, "a" * 24)],
)
def test_valid_identifiers(raw: str, expected: str) -> None:
    assert proto.validate_identifier(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("a" * 25, "at most 24"),
        ("two words", "may only contain"),
        ("ñandú", "may only contain"),
        ("a:b", "may only contain"),
        ("SERVER", "reserved"),
        ("me", "reserved"),
        ("Client", "reserved"),
        ("   ", "empty"),
    ],
)
def test_invalid_identifiers(raw: str, reason: str) -> None:
    with pytest.raises(proto.ProtocolError, match=reason):
        proto.validate_identifier(raw)


def test_parse_amount() -> None:
    assert proto.parse_amount(" 50000 ", allow_zero=True) == 50000
    assert proto.parse_amount("0", allow_zero=True) == 0
    assert proto.parse_amount("0007", allow_zero=False) == 7
    assert proto.parse_amount(str(proto.MAX_AMOUNT), allow_zero=False) == proto.MAX_AMOUNT
    for bad in ("-5", "1.5", "1e3", "", "abc", "²", "٣", "+3", "1 000"):
        with pytest.raises(proto.ProtocolError, match="whole number"):
            proto.parse_amount(bad, allow_zero=True)
    with pytest.raises(proto.ProtocolError, match="greater than 0"):
        proto.parse_amount("0", allow_zero=False)
    for huge in (str(proto.MAX_AMOUNT + 1), "9" * 5000, "0" * 40 + "9" * 40):
        with pytest.raises(proto.ProtocolError, match="cannot be more than"):
            proto.parse_amount(huge, allow_zero=True)


def test_sanitize_strips_terminal_control() -> None:
    assert proto.sanitize("hi\x1b[2J\x1b[31mred\x07\tend\r") == "hi[2J[31mred end"
    assert proto.sanitize("a\u202eb\u2066c") == "abc"
    assert proto.sanitize("¡Hola, ñandú! 😀") == "¡Hola, ñandú! 😀"


def test_render_emojis_only_whole_words() -> None:
    assert proto.render_emojis(":smile") == ":~)"
    assert proto.render_emojis("so :angry and :confused") == "so >:( and :S"
    assert proto.render_emojis("x:smile :smiley") == "x:smile :smiley"


@pytest.mark.parametrize(
    ("line", "name", "args"),
    [
        ("hola a todos", "chat", ("hola a todos",)),
        (":)", "chat", (":)",)),
        (":~) jaja", "chat", (":~) jaja",)),
        (":smile", "chat", (":smile",)),
        (":smile hola", "chat", (":smile hola",)),
        (":D", "chat", (":D",)),
        (":S", "chat", (":S",)),
        (":c", "chat", (":c",)),
        (":v que pena", "chat", (":v que pena",)),
        (":P", "chat", (":P",)),
        (":P jaja", "chat", (":P jaja",)),
        (":D:", "chat", (":D:",)),
        (":-)", "chat", (":-)",)),
        (":q", "q", ()),
        ("  :q  ", "q", ()),
        (":u", "u", ()),
        (":funds", "funds", ()),
        (":h", "h", ()),
        (":p - bob - hola, ¿cómo estás?", "p", ("bob", "hola, ¿cómo estás?")),
        (":p - a-b - x - y", "p", ("a-b", "x - y")),
        (":t - bob - 100", "t", ("bob", "100")),
        (":t  -  bob  -  -5", "t", ("bob", "-5")),
    ],
)
def test_parse_line(line: str, name: str, args: tuple[str, ...]) -> None:
    command = proto.parse_line(line)
    assert (command.name, command.args) == (name, args)


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (":nope", "Unknown command ':nope'. Type :h to see the commands."),
        (":fly", "Unknown command ':fly'. Type :h to see the commands."),
        (":pm - ana - hola", "Unknown command ':pm'. Type :h to see the commands."),
        (":p-ana-secreto", "Usage: :p - <Identifier> - <Message>"),
        (":t-ana-5", "Usage: :t - <Identifier> - <Amount>"),
        (":q!", "Usage: :q"),
        (":funds?", "Usage: :funds"),
        (":FUNDS", "Usage: :funds"),
        (":P - ana - hola", "Usage: :p - <Identifier> - <Message>"),
        (":T-ana-5", "Usage: :t - <Identifier> - <Amount>"),
        (":p", "Usage: :p - <Identifier> - <Message>"),
        (":t", "Usage: :t - <Identifier> - <Amount>"),
        (":q now", "Usage: :q"),
        (":p bob hola", "Usage: :p - <Identifier> - <Message>"),
        (":p - bob - ", "Usage: :p - <Identifier> - <Message>"),
        (":t - bob", "Usage: :t - <Identifier> - <Amount>"),
        (":t - bob - 1 2", "Usage: :t - <Identifier> - <Amount>"),
        (":funds please", "Usage: :funds"),
    ],
)
def test_parse_line_errors(line: str, error: str) -> None:
    command = proto.parse_line(line)
    assert command.name == "error"
    assert command.error == error


def test_help_is_generated_from_the_command_table() -> None:
    text = "\n".join(proto.help_lines())
    for spec in proto.COMMANDS.values():
        assert spec.usage in text
    for code in proto.EMOJIS:
        assert code in text
    assert all(line.startswith(proto.SERVER_PREFIX) for line in proto.help_lines())


@given(st.text(max_size=200))
def test_parse_line_never_raises(line: str) -> None:
    command = proto.parse_line(line)
    assert command.name in {"chat", "error", *proto.COMMANDS}


def test_line_buffer_framing() -> None:
    buf = proto.LineBuffer(max_bytes=10)
    assert buf.feed(b"hel") == []
    assert buf.feed(b"lo\r\nwor") == ["hello"]
    assert buf.feed(b"ld\n\n") == ["world", ""]
    errors = buf.feed(b"x" * 25)
    assert len(errors) == 1 and "longer than 10 bytes" in str(errors[0])
    assert buf.feed(b"y" * 25) == []
    assert buf.feed(b"tail\nok\n") == ["ok"]
    bad = buf.feed(b"\xff\xfe\n")
    assert isinstance(bad[0], proto.ProtocolError) and "UTF-8" in str(bad[0])
    assert buf.feed("ñ".encode()[:1]) == []
    assert buf.feed("ñ".encode()[1:] + b"\n") == ["ñ"]
    assert buf.pending == 0


@given(
    st.lists(
        st.text(
            alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=50
        ),
        max_size=20,
    ),
    st.data(),
)
def test_line_buffer_any_split(lines: list[str], data: st.DataObject) -> None:
    payload = "".join(line + "\n" for line in lines).encode()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(payload)), max_size=10)))
    buf = proto.LineBuffer(max_bytes=1 << 16)
    out: list[object] = []
    start = 0
    for cut in [*cuts, len(payload)]:
        out.extend(buf.feed(payload[start:cut]))
        start = cut
    assert out == lines


@given(st.text(max_size=80))
def test_might_be_command_never_hides_a_command(line: str) -> None:
    if not proto.might_be_command(line):
        assert proto.parse_line(line).name == "chat"


@given(st.text(max_size=80))
def test_sanitize_fast_path_agrees_with_the_slow_path(text: str) -> None:
    slow = "".join(
        " " if ch == "\t" else ch
        for ch in text
        if ch == "\t" or unicodedata.category(ch) not in {"Cc", "Cf", "Zl", "Zp"}
    )
    assert proto.sanitize(text) == slow


def test_every_protocol_command_has_exactly_one_server_handler() -> None:
    from chatlib.server import HANDLERS

    assert set(HANDLERS) == set(proto.COMMANDS) | {"chat", "error"}
    for spec in proto.COMMANDS.values():
        assert proto.parse_line(spec.usage.split(" ")[0]).name in HANDLERS


def test_sanitize_strips_line_separators_and_invisible_characters() -> None:
    hidden = "a\u2028b\u2029c\u061cd\u200be\u200cf\u200dg\u2060h\ufeffi\u202ej"
    assert proto.sanitize(hidden) == "abcdefghij"
    assert proto.sanitize("precio:\u00a0500") == "precio:\u00a0500"


def test_a_full_length_line_whose_crlf_is_split_across_packets_is_accepted() -> None:
    framer = proto.LineBuffer()
    body = b"x" * proto.MAX_LINE_BYTES
    assert framer.feed(body + b"\r") == []
    assert framer.feed(b"\n") == [body.decode()]
    assert [str(item) for item in framer.feed(body + b"y\r")] == [
        "Your line was longer than 4096 bytes and was ignored."
    ]


@pytest.mark.parametrize(
    "line",
    [
        ":t - ana - 50",
        ":t - ana.b_c-1 - 1",
        f":t - ana - {proto.MAX_AMOUNT}",
        f":t - ana - {proto.MAX_AMOUNT + 1}",
        ":t - ana - 0",
        ":t - ana - 007",
        ":t - ana - 5x",
        ":t - ana - -5",
        ":t - ana -  50",
        ":t  - ana - 50",
        ":t - ana - 50 ",
        " :t - ana - 50",
        ":t - ana - ５",
        ":t - ana - ²",
        ":t - ana",
        ":t - - - 5",
        ":t - ana - 9999999999999999999999",
        ":T - ana - 50",
    ],
)
def test_the_plain_transfer_fast_path_agrees_with_the_general_parser(line: str) -> None:
    """``parse_plain_transfer`` acepta solo lo que aceptan ``parse_line`` + ``parse_amount``, igual."""
    _check_plain_transfer(line)


@given(st.text(alphabet=" -:t0123456789anaé５\t", max_size=20))
def test_the_plain_transfer_fast_path_never_disagrees(tail: str) -> None:
    _check_plain_transfer(":t " + tail)


def _check_plain_transfer(line: str) -> None:
    fast = proto.parse_plain_transfer(line)
    command = proto.parse_line(line)
    general: tuple[str, int] | None = None
    if command.name == "t":
        try:
            general = (command.args[0], proto.parse_amount(command.args[1], allow_zero=False))
        except proto.ProtocolError:
            general = None
    if fast is not None:
        assert fast == general
    elif line in (":t - ana -  50", ":t  - ana - 50", ":t - ana - 50 ", " :t - ana - 50"):
        # Forma no exacta: la acepta el camino general, y el servidor lo usa.
        assert general == ("ana", 50)
    else:
        assert not (general and line == f":t - {general[0]} - {general[1]}")


_LINE_PIECES = st.sampled_from([b"hola", b"\r", b"\xc3\xa9", b"\xff", b":t - a - 5", b"x" * 1500, b" "])


@given(
    st.lists(st.lists(_LINE_PIECES, max_size=6).map(b"".join), max_size=12),
    st.lists(st.integers(min_value=1, max_value=5000), max_size=8),
)
def test_line_buffer_gives_the_same_lines_however_the_bytes_are_split(
    lines: list[bytes], cuts: list[int]
) -> None:
    """Todo un ``recv`` se decodifica de una vez; debe dar lo mismo que de a un byte."""
    data = b"".join(line + b"\n" for line in lines)

    def feed_all(chunks: list[bytes]) -> list[str]:
        framer = proto.LineBuffer(max_bytes=4096)
        return [str(item) for chunk in chunks for item in framer.feed(chunk)]

    one_by_one = feed_all([data[i : i + 1] for i in range(len(data))])
    chunks, start = [], 0
    for cut in sorted(cuts) + [len(data)]:
        chunks.append(data[start:cut])
        start = max(start, cut)
    assert feed_all([data]) == one_by_one
    assert feed_all(chunks) == one_by_one


def test_plain_chat_block_exact() -> None:
    """Las líneas simples salen con el prefijo, recortadas y sin las vacías; lo demás va línea por línea."""
    assert proto.plain_chat_block(["hola", "  a b  ", "   ", "x"], "ana: ") == "ana: hola\nana: a b\nana: x"
    assert proto.plain_chat_block(["", "   "], "ana: ") == ""
    assert proto.plain_chat_block(["hola", ":q"], "ana: ") is None
    assert proto.plain_chat_block(["hola", "hora: 5"], "ana: ") is None
    assert proto.plain_chat_block(["hola", "\x1b[31mrojo"], "ana: ") is None
    assert proto.plain_chat_block(["hola", proto.ProtocolError("too long")], "ana: ") is None


_CHAT_PIECES = st.sampled_from(["hola", " ", "é", ":", ":smile", "\t", "\x1b", "\u200b", "\u3000", "m 12"])


@given(st.lists(st.lists(_CHAT_PIECES, max_size=5).map("".join), min_size=1, max_size=12))
def test_plain_chat_block_agrees_with_relaying_line_by_line(lines: list[str]) -> None:
    """Da lo mismo que ``Session.relay`` línea por línea, y solo acepta un lote de líneas todas simples."""
    block = proto.plain_chat_block(lines, "ana: ")
    plain = all(":" not in line and line.isprintable() for line in lines)
    assert (block is not None) == plain
    if block is not None:
        relayed = [proto.render_emojis(proto.sanitize(line)).strip() for line in lines]
        assert block == "\n".join(proto.chat_line("ana", text) for text in relayed if text)
