"""El verificador de conformidad contra el servidor de referencia y contra servidores de alumnos.

Cada servidor de ``check_servers`` se desvía en una sola cosa y la prueba dice
qué filas deben fallar; todas las demás deben pasar. Plazos cortos: ningún
escenario espera el plazo completo salvo donde el servidor falla.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

import pytest
from chatlib import protocol as proto
from chatlib.check import KEYS, REQUIREMENTS, Report, Result, Settings, Verdict, format_table, run, to_json
from chatlib.check.__main__ import main
from chatlib.check.text import (
    Reframer,
    chat_sender,
    notice_subject,
    number_pattern,
    split_glued,
    word_pattern,
)
from chatlib.lab import unsafe_bank
from chatlib.server import ChatServer
from tests.check_servers import Quirks, StudentServer

ROOT = Path(__file__).resolve().parents[1]
FAST = Settings(timeout=3.0, settle=0.1, pause=0.05)
NOT_CHECKABLE = {r.key for r in REQUIREMENTS if r.not_checkable}
NO_LOCK_NOTE = "a lock cannot be proven from the wire"


def assert_verdicts(report: Report, failing: Collection[str] = ()) -> None:
    """Las filas de ``failing`` fallan, las no verificables lo dicen, todas las demás pasan."""
    assert [r.key for r in report.results] == list(KEYS)
    for result in report.results:
        if result.key in NOT_CHECKABLE:
            expected = Verdict.NOT_CHECKABLE
        else:
            expected = Verdict.FAIL if result.key in failing else Verdict.PASS
        assert result.verdict is expected, f"{result.key}: {result.detail}\n{format_table(report)}"
    assert report.passed == (not failing)


def row(report: Report, key: str) -> Result:
    return next(r for r in report.results if r.key == key)


def test_reframer_lines_accepts_crlf_and_skips_blank_lines() -> None:
    framer = Reframer("lines")
    assert framer.feed(b"Welcome!\r\n\r\nana: ho") == ["Welcome!"]
    assert framer.feed(b"la\n") == ["ana: hola"]
    assert framer.saw_crlf
    assert framer.feed(b"Name: ") == []
    assert framer.pending
    assert framer.flush() == ["Name: "]
    assert not framer.pending


def test_reframer_lines_keeps_a_utf8_character_split_across_recvs() -> None:
    framer = Reframer("lines")
    data = "ana: ¿sí?\n".encode()
    assert framer.feed(data[:8]) + framer.feed(data[8:]) == ["ana: ¿sí?"]


def test_reframer_bare_splits_messages_glued_by_two_sends() -> None:
    framer = Reframer("bare")
    glued = (proto.WELCOME + proto.ASK_IDENTIFIER).encode()
    assert framer.feed(glued) == [proto.WELCOME, proto.ASK_IDENTIFIER]
    assert framer.feed(b"ana: hola") == ["ana: hola"]
    assert split_glued(proto.funds_line(3) + proto.GOODBYE) == [proto.funds_line(3), proto.GOODBYE]


def test_notices_and_chat_lines_accept_identifiers_from_getpeername() -> None:
    peer = "('127.0.0.1', 40412)"
    assert notice_subject(proto.connected_line(peer), "connected") == peer
    assert notice_subject(proto.connected_line(peer), "disconnected") is None
    assert notice_subject(proto.disconnected_line("ana"), "disconnected") == "ana"
    assert notice_subject("[SERVER] Client: ana connected", "connected") is None
    assert chat_sender(f"{peer}: hola", "hola") == peer
    assert chat_sender("hola", "hola") is None
    assert chat_sender("ana: hola!", "hola") is None


def test_identifiers_and_ports_match_whole_words_only() -> None:
    assert word_pattern("ana").search(proto.users_line(["beto", "ana"]))
    assert not word_pattern("ana").search("anabel, ana.b, ana-2")
    assert number_pattern(40412).search("('127.0.0.1', 40412)")
    assert not number_pattern(4041).search("('127.0.0.1', 40412)")


def test_report_passes_only_when_every_checkable_row_passes() -> None:
    passed = Result("relay", "3", "relay", Verdict.PASS, "ok")
    failed = Result("funds", "7", "funds", Verdict.FAIL, "no reply", ("a <- x",))
    skipped = Result("me-prefix", "3", "me", Verdict.NOT_CHECKABLE, "client side")
    assert Report("h:1", results=[passed, skipped]).passed
    assert not Report("h:1", results=[skipped]).passed
    report = Report("h:1", results=[passed, failed, skipped])
    assert not report.passed
    table = format_table(report)
    assert "funds: no reply\n    a <- x" in table
    assert table.endswith("NOT OK: 1 passed, 1 failed, 1 not checkable (0 connections, at most 0 at once)")
    data = json.loads(to_json(report))
    assert data["passed"] is False
    assert data["results"][1] == {
        "key": "funds",
        "requirement": "7",
        "title": "funds",
        "verdict": "FAIL",
        "detail": "no reply",
        "evidence": ["a <- x"],
    }


def test_the_reference_server_passes_everything(server: ChatServer) -> None:
    report = run(*server.address, FAST)
    assert_verdicts(report)
    assert report.framing == ("server sends lines ending in \\n; the checker sends lines ending in \\n")
    assert report.identifiers.startswith("asked by the server")
    assert row(report, "money").detail == f"no loss in 80 concurrent transfers; {NO_LOCK_NOTE}"
    assert report.connections <= FAST.max_connections
    assert report.peak_connections == 6


def test_a_bank_without_a_lock_and_a_race_window_fails_only_the_money_check(
    make_server: Callable[..., ChatServer],
) -> None:
    srv = make_server(bank=unsafe_bank(0.01))
    report = run(*srv.address, FAST)
    assert_verdicts(report, failing={"money"})
    money = row(report, "money")
    assert money.detail.startswith(
        "money not conserved: 4000 dollars in total before 80 concurrent transfers"
    )
    assert len(money.evidence) == 8
    assert all(
        re.fullmatch(r"m[1-4] <- \[SERVER\] Client: You have \d+ dollars\.   \(.+\)", x)
        for x in money.evidence
    )
    assert money.evidence[-1].endswith("(at the end)")


STUDENTS = [
    pytest.param(Quirks(other_wording=True, crlf=True), set(), id="other-wording-crlf"),
    pytest.param(Quirks(ids="peer"), set(), id="ids-from-getpeername"),
    pytest.param(Quirks(framing="bare"), set(), id="no-framing"),
    pytest.param(Quirks(recv_reads=True), set(), id="one-message-per-recv"),
    pytest.param(Quirks(echo=True), {"relay"}, id="echoes-to-sender"),
    pytest.param(Quirks(disconnect_notice=False), {"notices"}, id="no-disconnect-notice"),
    pytest.param(Quirks(lock=False), set(), id="no-lock-no-window"),
    pytest.param(Quirks(other_confirmation=True), {"balance"}, id="other-balance-confirmation"),
    pytest.param(Quirks(welcome="Welcome to the chat!"), {"welcome"}, id="other-welcome"),
]


def test_a_server_that_lets_a_repeated_identifier_in_fails_the_identifier_check() -> None:
    with StudentServer(Quirks(unique=False)) as srv:
        report = run(*srv.address, FAST, only=["identifier"])
    result = row(report, "identifier")
    assert result.verdict is Verdict.FAIL
    # Este servidor reemplaza al primero en su diccionario: el primero ni siquiera ve el aviso.
    assert re.fullmatch(r"a second client that answered 'ck\w+', already in use, was let in", result.detail)
    assert any(x.startswith("dup <- ") for x in result.evidence)


@pytest.mark.parametrize(("quirks", "failing"), STUDENTS)
def test_student_servers_get_the_expected_verdicts(quirks: Quirks, failing: set[str]) -> None:
    settings = FAST
    if quirks.framing == "bare" or quirks.recv_reads:
        # Escrituras espaciadas; el sondeo de dos :funds juntos espera el plazo una vez.
        settings = Settings(timeout=1.5, settle=0.1, pause=0.1)
    with StudentServer(quirks) as srv:
        report = run(*srv.address, settings)
    assert_verdicts(report, failing)
    assert row(report, "money").detail == f"no loss in 80 concurrent transfers; {NO_LOCK_NOTE}"


def test_a_server_without_a_thread_per_connection_is_stuck_behind_a_silent_client() -> None:
    with StudentServer(Quirks(serial=True)) as srv:
        report = run(*srv.address, Settings(timeout=1.0, settle=0.1, pause=0.05), only=["welcome", "threads"])
    assert row(report, "welcome").verdict is Verdict.PASS
    threads = row(report, "threads")
    assert threads.verdict is Verdict.FAIL
    assert threads.detail == (
        "while a client stayed silent in the handshake: "
        "a did not receive the greeting and identifier question"
    )
    assert threads.evidence == ("a <- (nothing received)",)


def test_the_checker_reports_what_it_discovered() -> None:
    with StudentServer(Quirks(framing="bare", ids="peer", crlf=True)) as srv:
        report = run(*srv.address, Settings(timeout=3.0, settle=0.1, pause=0.1), only=["relay", "transfer"])
    assert [r.key for r in report.results] == ["relay", "transfer"]
    assert all(r.verdict is Verdict.PASS for r in report.results), format_table(report)
    assert report.framing.startswith("server sends one message per send(), no \\n")
    assert report.identifiers.startswith("assigned by the server")
    assert re.fullmatch(
        r"\"\('127\.0\.0\.1', \d+\): hola-\w+\" reached the others, not the sender",
        row(report, "relay").detail,
    )


def test_failures_name_what_was_missing_and_show_the_lines_seen() -> None:
    with StudentServer(Quirks(echo=True, disconnect_notice=False)) as srv:
        report = run(*srv.address, FAST, only=["relay", "notices"])
    relay, notices = row(report, "relay"), row(report, "notices")
    assert relay.detail == "the sender received its own message back"
    assert len(relay.evidence) == 1 and re.fullmatch(r"a <- ck\w+: hola-\w+", relay.evidence[0])
    assert re.fullmatch(
        r"a did not receive '\[SERVER\] Client: ck\w+ disconnected!' within 3 s", notices.detail
    )
    assert notices.evidence[-1].endswith(" connected!")


def test_a_server_that_never_answers_fails_everything_without_hanging() -> None:
    with StudentServer(Quirks(silent=True)) as srv:
        report = run(*srv.address, Settings(timeout=0.5, settle=0.1, pause=0.05))
    assert_verdicts(report, failing=set(KEYS) - NOT_CHECKABLE)
    assert report.connections == 1
    for result in report.results:
        if result.verdict is Verdict.FAIL:
            assert (
                result.detail
                == "the server sent nothing after the connection was accepted (it stayed silent for 0.5 s)"
            )
            assert result.evidence == ("probe <- (nothing received)",)
    assert format_table(report).count("probe <- (nothing received)") == 1


def test_a_server_that_hangs_up_after_the_welcome_fails_with_its_last_lines() -> None:
    with StudentServer(Quirks(hang_up=True)) as srv:
        report = run(*srv.address, FAST, only=["welcome", "funds"])
    assert row(report, "welcome").verdict is Verdict.PASS
    funds = row(report, "funds")
    assert funds.verdict is Verdict.FAIL
    assert funds.detail.startswith("could not join: no balance question after answering the identifier")
    assert f"probe <- {proto.WELCOME}" in funds.evidence
    assert "probe xx the server closed the connection" in funds.evidence


def test_a_closed_port_fails_with_the_reason() -> None:
    srv = ChatServer("127.0.0.1", 0, console=None)
    address = srv.start()
    srv.stop()
    report = run(*address, FAST, only=["welcome", "relay"])
    assert [r.verdict for r in report.results] == [Verdict.FAIL, Verdict.FAIL]
    assert all(r.detail.startswith("cannot connect: ") for r in report.results)


def test_the_connection_budget_is_never_exceeded(server: ChatServer) -> None:
    report = run(*server.address, Settings(timeout=3.0, settle=0.1, max_connections=3), only=["relay"])
    relay = row(report, "relay")
    assert relay.verdict is Verdict.FAIL
    assert relay.detail == "the checker's budget of 3 connections is used up"
    assert report.connections == 3


def test_cli_only_verbose_and_exit_status_zero(
    server: ChatServer, capsys: pytest.CaptureFixture[str]
) -> None:
    host, port = server.address
    status = main(
        [host, str(port), "--only", "funds,me-prefix", "--verbose", "--timeout", "3", "--settle", "0.1"]
    )
    out, err = capsys.readouterr()
    assert status == 0
    assert re.search(
        r"^7 +funds +PASS +'\[SERVER\] Client: You have 2500 dollars\.', only to the asker$", out, re.M
    )
    assert re.search(r"^3 +me-prefix +NOT CHECKABLE +printed by the user's own client", out, re.M)
    assert "relay" not in out
    assert "[a] -> ':funds'" in err
    assert "[a] <- '[SERVER] Client: You have 2500 dollars.'" in err


def test_cli_rejects_an_unknown_check(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["127.0.0.1", "1", "--only", "relay,bogus"])
    assert exc.value.code == 2
    assert "unknown check(s): bogus" in capsys.readouterr().err


@pytest.fixture
def unsafe_server_process() -> Iterator[tuple[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "chatlib.server", "--port", "0", "--unsafe-bank"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            match = re.match(r"Listening on ([\d.]+):(\d+)", line)
            if match:
                yield match.group(1), match.group(2)
                break
    finally:
        proc.kill()
        proc.wait(10)


def test_cli_against_the_unsafe_bank_server_process(unsafe_server_process: tuple[str, str]) -> None:
    host, port = unsafe_server_process
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "chatlib.check",
            host,
            port,
            "--json",
            "--only",
            "money,transfer",
            "--settle",
            "0.1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    data = json.loads(done.stdout)
    verdicts = {r["key"]: r["verdict"] for r in data["results"]}
    assert verdicts == {"transfer": "PASS", "money": "FAIL"}
    assert data["passed"] is False
