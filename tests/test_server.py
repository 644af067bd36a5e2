"""El servidor de punta a punta: sockets reales en 127.0.0.1, clientes reales, líneas exactas."""

from __future__ import annotations

import logging
import random
import re
import socket
import threading
from collections.abc import Callable

import pytest
from chatlib import protocol as proto
from chatlib.client import ChatClient
from chatlib.server import SHUTDOWN_NOTICE, ChatServer
from tests.helpers import chatlib_threads, wait_until

Connect = Callable[..., ChatClient]


def test_handshake_lines_are_exact(server: ChatServer, connect: Connect) -> None:
    first = connect("Identifier2", 1)
    client = connect()
    assert client.expect(proto.WELCOME) == "Welcome to the best chat in the universe!"
    client.expect("[SERVER] Client: What is your identifier?")
    client.send("Identifier3")
    client.expect("[SERVER] Client: What is your balance?")
    client.send("50000")
    client.expect("[SERVER] Client: The balance of 50000 has been set to your account.")
    first.expect("[SERVER] Client: Identifier3 connected!")
    assert client.lines == [
        "Welcome to the best chat in the universe!",
        "[SERVER] Client: What is your identifier?",
        "[SERVER] Client: What is your balance?",
        "[SERVER] Client: The balance of 50000 has been set to your account.",
    ]
    assert server.console_lines == [
        "[SERVER] Client: Identifier2 connected!",
        "[SERVER] Client: Identifier3 connected!",
    ]
    assert server.accounts() == {"Identifier2": 1, "Identifier3": 50000}


def test_empty_identifier_uses_peer_address(server: ChatServer, connect: Connect) -> None:
    client = connect()
    client.expect(proto.ASK_IDENTIFIER)
    client.send("")
    client.expect(proto.ASK_BALANCE)
    client.send("7")
    client.expect(proto.balance_set_line(7))
    host, port = client._sock.getsockname()[:2]
    assert server.console_lines == [f"[SERVER] Client: {host}:{port} connected!"]


def test_identifier_errors_ask_again(server: ChatServer, connect: Connect) -> None:
    connect("Alice", 5)
    client = connect()
    client.expect(proto.ASK_IDENTIFIER)
    for bad, reason in [
        ("alice", "[SERVER] Client: The identifier 'alice' is already in use. Choose another."),
        ("SERVER", "[SERVER] Client: The identifier 'SERVER' is reserved."),
        ("no spaces", "[SERVER] Client: The identifier may only contain letters, digits, '_', '-' and '.'."),
        ("x" * 30, "[SERVER] Client: The identifier must have at most 24 characters."),
    ]:
        client.send(bad)
        client.expect(reason)
        client.expect(proto.ASK_IDENTIFIER)
    client.send("bob")
    client.expect(proto.ASK_BALANCE)
    client.send("9" * 5000)
    client.expect("[SERVER] Client: Your line was longer than 4096 bytes and was ignored.")
    client.expect(proto.ASK_BALANCE)
    for bad in ("-5", "lots", "1.5", "9" * 50):
        client.send(bad)
        client.expect(
            re.compile(
                r"^\[SERVER\] Client: The balance (must be a non-negative whole number|cannot be more)"
            )
        )
        client.expect(proto.ASK_BALANCE)
    client.send("10")
    client.expect(proto.balance_set_line(10))
    assert server.accounts() == {"Alice": 5, "bob": 10}


def test_chat_reaches_every_other_user(server: ChatServer, connect: Connect) -> None:
    clients = [connect(f"user{i}", 100) for i in range(8)]
    for i, client in enumerate(clients):
        client.send(f"hello from {i}")
    for i, client in enumerate(clients):
        client.expect_all([f"user{j}: hello from {j}" for j in range(8) if j != i])
    clients[0].send(":u")
    clients[0].expect("[SERVER] Client: Connected users: " + ", ".join(f"user{i}" for i in range(8)) + ".")
    for i, client in enumerate(clients):
        assert f"user{i}: hello from {i}" not in client.lines


def test_quit_and_abrupt_disconnect_are_announced(server: ChatServer, connect: Connect) -> None:
    a, b, c = connect("a", 1), connect("b", 2), connect("c", 3)
    b.quit()
    assert b.lines[-1] == "You have been disconnected from the best chat in the universe!"
    a.expect("[SERVER] Client: b disconnected!")
    c.expect("[SERVER] Client: b disconnected!")
    c.close()
    a.expect("[SERVER] Client: c disconnected!")
    assert server.console_lines[-2:] == [
        "[SERVER] Client: b disconnected!",
        "[SERVER] Client: c disconnected!",
    ]
    assert server.accounts() == {"a": 1}
    a.send(":u")
    a.expect("[SERVER] Client: Connected users: a.")


def test_private_message_only_reaches_target(server: ChatServer, connect: Connect) -> None:
    a, b, c = connect("ana", 0), connect("Beto", 0), connect("carla", 0)
    a.send(":p - beto - nos vemos :smile")
    b.expect("ana (private): nos vemos :~)")
    a.send(":p - nadie - hola")
    a.expect("[SERVER] Client: There is no connected user called 'nadie'.")
    a.send("publico")
    c.expect("ana: publico")
    assert not any("private" in line for line in c.lines)


def test_emojis_and_unknown_commands(server: ChatServer, connect: Connect) -> None:
    a, b = connect("ana", 0), connect("beto", 0)
    for code, face in [(":smile", ":~)"), (":angry", ">:("), (":confused", ":S")]:
        a.send(code)
        b.expect(f"ana: {face}")
    a.send(":fly")
    a.expect("[SERVER] Client: Unknown command ':fly'. Type :h to see the commands.")
    a.send(":t bob 5")
    a.expect("[SERVER] Client: Usage: :t - <Identifier> - <Amount>")
    a.send(":h")
    for line in proto.help_lines():
        a.expect(line)


def test_funds_and_transfers(server: ChatServer, connect: Connect) -> None:
    a, b = connect("ana", 3000), connect("beto", 10)
    a.send(":funds")
    a.expect("[SERVER] Client: You have 3000 dollars.")
    a.send(":t - beto - 10000")
    a.expect("[SERVER] Client: You don't have sufficient funds for the transaction.")
    a.send(":t - BETO - 1000")
    a.expect("[SERVER] Client: You transferred 1000 dollars to beto. You have 2000 dollars.")
    b.expect("[SERVER] Client: ana transferred you 1000 dollars.")
    b.send(":funds")
    b.expect("[SERVER] Client: You have 1010 dollars.")
    for command, error in [
        (":t - beto - 5", "[SERVER] Client: You cannot transfer money to yourself."),
        (":t - ghost - 5", "[SERVER] Client: There is no connected user called 'ghost'."),
        (
            ":t - beto - -5",
            "[SERVER] Client: The amount must be a positive whole number of dollars, like 50000.",
        ),
        (":t - beto - 0", "[SERVER] Client: The amount must be greater than 0."),
        (
            ":t - beto - 1.5",
            "[SERVER] Client: The amount must be a positive whole number of dollars, like 50000.",
        ),
        (
            ":t - beto - " + "9" * 100,
            f"[SERVER] Client: The amount cannot be more than {proto.MAX_AMOUNT} dollars.",
        ),
    ]:
        b.send(command)
        b.expect(error)
    assert server.accounts() == {"ana": 2000, "beto": 1010}
    server.bank.check_invariant()


def test_transfer_to_disconnected_user_is_refused(server: ChatServer, connect: Connect) -> None:
    a, b = connect("ana", 100), connect("beto", 0)
    b.quit()
    a.expect("[SERVER] Client: beto disconnected!")
    a.send(":t - beto - 50")
    a.expect("[SERVER] Client: There is no connected user called 'beto'.")
    a.send(":funds")
    a.expect("[SERVER] Client: You have 100 dollars.")


def test_a_transfer_refused_for_funds_does_not_wait_for_the_bank(
    server: ChatServer, connect: Connect
) -> None:
    """Un rechazo por fondos se decide sin el lock del banco (antes, con otro hilo dentro, esperaba)."""
    a, b = connect("ana", 100), connect("beto", 0)
    lock = server.bank.lock
    with lock:
        a.send(":t - beto - 500")
        a.expect("[SERVER] Client: You don't have sufficient funds for the transaction.", timeout=2)
        a.send(":t - ghost - 5")
        a.expect("[SERVER] Client: There is no connected user called 'ghost'.", timeout=2)
        a.send(":t - ana - 5")
        a.expect("[SERVER] Client: You cannot transfer money to yourself.", timeout=2)
    a.send(":t - beto - 60")
    a.expect("[SERVER] Client: You transferred 60 dollars to beto. You have 40 dollars.")
    b.expect("[SERVER] Client: ana transferred you 60 dollars.")
    assert server.accounts() == {"ana": 40, "beto": 60}


def test_refusals_and_transfers_in_one_batch_answer_in_line_order(
    server: ChatServer, connect: Connect
) -> None:
    """Un lote que alterna rechazos (sin banco) y transferencias (con el banco, que se suelta al rechazar)."""
    a, b = connect("ana", 100), connect("beto", 0)
    a.send_raw(b":t - beto - 150\n:t - beto - 60\n:t - beto - 50\n:t - beto - 40\n:funds\n:t - beto - 1\n")
    insufficient = "[SERVER] Client: You don't have sufficient funds for the transaction."
    expected = [
        insufficient,
        "[SERVER] Client: You transferred 60 dollars to beto. You have 40 dollars.",
        insufficient,
        "[SERVER] Client: You transferred 40 dollars to beto. You have 0 dollars.",
        "[SERVER] Client: You have 0 dollars.",
        insufficient,
    ]
    for line in expected:
        a.expect(line)
    assert a.lines[-len(expected) :] == expected
    b.expect_all(
        [
            "[SERVER] Client: ana transferred you 60 dollars.",
            "[SERVER] Client: ana transferred you 40 dollars.",
        ]
    )
    assert server.accounts() == {"ana": 0, "beto": 100}
    server.bank.check_invariant()


def test_bad_bytes_never_crash_or_move_money(server: ChatServer, connect: Connect) -> None:
    a, b = connect("ana", 100), connect("beto", 100)
    a.send_raw(b"\xff\xfe bad \xc3\n")
    a.expect("[SERVER] Client: Your message was not valid UTF-8 and was ignored.")
    a.send_raw(b"A" * 10_000 + b"\n")
    a.expect("[SERVER] Client: Your line was longer than 4096 bytes and was ignored.")
    a.send_raw(b"\x1b[2J\x1b[31mred\x07 text\r\n")
    b.expect("ana: [2J[31mred text")
    a.send_raw(b"\x00\x00\n:t - beto - \x00\n")
    a.expect("[SERVER] Client: The amount must be a positive whole number of dollars, like 50000.")
    a.send("still alive")
    b.expect("ana: still alive")
    assert server.accounts() == {"ana": 100, "beto": 100}


def test_silent_client_times_out_and_vanishing_client_frees_its_name(
    make_server: Callable[..., ChatServer],
) -> None:
    srv = make_server(handshake_timeout=0.3)
    silent = ChatClient(srv.address)
    silent.expect(proto.ASK_IDENTIFIER)
    silent.expect("[SERVER] Client: You took too long to answer. Goodbye!", timeout=5)
    assert silent.wait_closed(5)
    ghost = ChatClient(srv.address)
    ghost.expect(proto.ASK_IDENTIFIER)
    ghost.send("zoe")
    ghost.expect(proto.ASK_BALANCE)
    ghost.close()
    wait_until(lambda: srv.session_count == 0, what="the ghost session to end")
    zoe = ChatClient.join(srv.address, "zoe", 1)
    zoe.close()
    silent.close()
    wait_until(lambda: srv.session_count == 0, what="zoe's session to end")
    assert srv.console_lines == ["[SERVER] Client: zoe connected!", "[SERVER] Client: zoe disconnected!"]
    assert srv.bank.accounts() == {}


def test_full_chat_refuses_newcomers(make_server: Callable[..., ChatServer]) -> None:
    srv = make_server(max_clients=2)
    a = ChatClient.join(srv.address, "a", 0)
    b = ChatClient.join(srv.address, "b", 0)
    c = ChatClient(srv.address)
    c.expect("[SERVER] Client: The chat is full (2 users). Please try again later.")
    assert c.wait_closed(5)
    b.quit()
    wait_until(lambda: srv.session_count == 1, what="b to leave")
    d = ChatClient.join(srv.address, "d", 0)
    for client in (a, c, d):
        client.close()


def test_stalled_reader_is_cut_off_without_slowing_others(
    make_server: Callable[..., ChatServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chatlib.server")
    srv = make_server(queue_limit=64 * 1024)
    stalled_sock = socket.create_connection(srv.address)
    stalled_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled_sock.sendall(b"sleepy\n0\n")
    readers = [ChatClient.join(srv.address, f"r{i}", 0) for i in range(3)]
    sender = ChatClient.join(srv.address, "sender", 0)
    wait_until(lambda: len(srv.members) == 5, what="everyone to join")
    payload = "x" * 1000
    gone = "[SERVER] Client: sleepy disconnected!"
    # Se envía hasta que el servidor corte al lector dormido (acotado a ~32 MB):
    # el kernel absorbe unos MB y luego la cola de 64 KiB se desborda.
    sent = 0
    while gone not in readers[0].lines and sent < 32_000:
        for _ in range(500):
            sender.send(f"{sent} {payload}")
            sent += 1
        readers[0].expect(f"sender: {sent - 1} {payload}", timeout=20)
    for reader in readers:
        reader.expect_all([gone, f"sender: {sent - 1} {payload}"], timeout=20)
        received = [line for line in reader.lines if line.startswith("sender: ")]
        assert received == [f"sender: {i} {payload}" for i in range(sent)]
    assert "[SERVER] Client: sleepy disconnected!" in srv.console_lines
    assert "sleepy was disconnected: stopped reading (more than 65536 bytes queued)" in caplog.text
    stalled_sock.close()
    for client in (*readers, sender):
        client.close()


def test_concurrent_transfers_over_sockets_conserve_money(server: ChatServer, connect: Connect) -> None:
    names = [f"p{i}" for i in range(10)]
    clients = {name: connect(name, 1_000) for name in names}
    start = threading.Barrier(len(names))
    failures: list[BaseException] = []
    per_client = 60

    def trade(name: str) -> None:
        client = clients[name]
        rng = random.Random(name)
        try:
            start.wait(5)
            for _ in range(per_client):
                target = rng.choice([n for n in names if n != name])
                client.send(f":t - {target} - {rng.randint(1, 300)}")
            # Cada :t recibe exactamente una respuesta propia (éxito o fondos insuficientes).
            done = 0
            while done < per_client:
                client.expect(
                    lambda line: (
                        line == proto.INSUFFICIENT_FUNDS or proto.parse_transfer_sent_line(line) is not None
                    ),
                    timeout=20,
                )
                done += 1
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=trade, args=(name,)) for name in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures
    assert not any(t.is_alive() for t in threads)
    balances = server.bank.accounts()
    assert sum(balances.values()) == 10_000
    assert min(balances.values()) >= 0
    server.bank.check_invariant()
    reported = 0
    for client in clients.values():
        client.send(":funds")
        funds = proto.parse_funds_line(client.expect(lambda line: proto.parse_funds_line(line) is not None))
        assert funds is not None
        reported += funds
    assert reported == 10_000


def test_stop_tells_everyone_and_joins_every_thread(make_server: Callable[..., ChatServer]) -> None:
    srv = make_server()
    clients = [ChatClient.join(srv.address, f"u{i}", 1) for i in range(8)]
    half = ChatClient(srv.address)
    half.expect(proto.ASK_IDENTIFIER)
    srv.stop()
    for client in (*clients, half):
        client.expect(SHUTDOWN_NOTICE)
        assert client.wait_closed(5)
        client.close()
    assert chatlib_threads() == []
    assert srv.bank.accounts() == {}
    with pytest.raises(OSError):
        socket.create_connection(srv.address, timeout=1).close()


def test_servers_start_and_stop_many_times() -> None:
    for i in range(20):
        with ChatServer("127.0.0.1", 0, console=None) as srv:
            client = ChatClient.join(srv.address, f"n{i}", i)
            client.send(":funds")
            client.expect(f"[SERVER] Client: You have {i} dollars.")
            client.close()
    assert chatlib_threads() == []


def test_mistyped_commands_are_never_broadcast(server: ChatServer, connect: Connect) -> None:
    a, b = connect("ana", 100), connect("beto", 100)
    for mistyped, usage in [
        (":p-beto-secreto", "Usage: :p - <Identifier> - <Message>"),
        (":t-beto-5", "Usage: :t - <Identifier> - <Amount>"),
        (":q!", "Usage: :q"),
        (":funds?", "Usage: :funds"),
        (":P - beto - secreto", "Usage: :p - <Identifier> - <Message>"),
    ]:
        a.send(mistyped)
        a.expect(proto.server_line(usage))
    for emoticon in (":D", ":S", ":P jaja", ":smile hola"):
        a.send(emoticon)
        b.expect(proto.chat_line("ana", proto.render_emojis(emoticon)))
    a.send("fin")
    b.expect("ana: fin")
    assert not [line for line in b.lines if "secreto" in line or "beto-5" in line or ":q!" in line]
    assert server.bank.accounts() == {"ana": 100, "beto": 100}


def test_a_burst_of_plain_lines_is_relayed_exactly_as_line_by_line(
    server: ChatServer, connect: Connect
) -> None:
    """Una ráfaga en un solo envío: las simples van de una vez, y con una que no lo es, línea por línea."""
    a, b = connect("ana", 10), connect("beto", 10)
    plain = [f"m {i} hola" for i in range(200)]
    a.send_raw("".join(f"{line}\n" for line in [*plain[:100], "  padded  ", "   ", *plain[100:]]).encode())
    a.send_raw(b"uno\nhola :smile\nfin: ya\n\x1b[31mrojo\n")
    expected = [f"ana: {line}" for line in [*plain[:100], "padded", *plain[100:]]]
    expected += ["ana: uno", "ana: hola :~)", "ana: fin: ya", "ana: [31mrojo"]
    b.expect(expected[-1])
    assert b.lines[-len(expected) :] == expected
