"""``python -m chatlib.check HOST PORT``: la tabla de requisitos y un código de salida."""

from __future__ import annotations

import argparse
import sys

from chatlib.check.checks import KEYS, REQUIREMENTS, run
from chatlib.check.report import format_table, to_json
from chatlib.check.wire import Settings


def build_parser() -> argparse.ArgumentParser:
    """Opciones de línea de comandos del verificador."""
    checkable = [r.key for r in REQUIREMENTS if r.check is not None or r.key == "welcome"]
    parser = argparse.ArgumentParser(
        prog="python -m chatlib.check",
        description="Check a chat server of the assignment over TCP, as a black box. "
        "The server must already be running; the checker never starts or stops it.",
        epilog="Exit status: 0 when every checkable requirement passes, 1 when one fails, 2 on usage errors.",
    )
    parser.add_argument("host", help="address of the server under test")
    parser.add_argument("port", type=int, help="its TCP port")
    parser.add_argument(
        "--only", metavar="CHECK[,CHECK...]", help=f"run only these checks: {', '.join(checkable)}"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="show every line sent and received (on stderr)"
    )
    parser.add_argument(
        "--timeout", type=float, default=3.0, help="seconds to wait for each expected reply (default 3)"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=0.3,
        help="seconds of silence before concluding that a line did NOT arrive (default 0.3)",
    )
    parser.add_argument(
        "--pause",
        type=float,
        default=0.15,
        help="seconds between two writes to a server without newline framing (default 0.15)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=48,
        help="connections the checker may open in total (default 48)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Punto de entrada de ``python -m chatlib.check`` y ``chatlib-check``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    only = None
    if args.only:
        only = [key.strip() for key in args.only.split(",") if key.strip()]
        unknown = [key for key in only if key not in KEYS]
        if unknown:
            parser.error(f"unknown check(s): {', '.join(unknown)}; known: {', '.join(KEYS)}")
    if min(args.timeout, args.settle, args.pause) <= 0 or args.max_connections < 1:
        parser.error("--timeout, --settle and --pause must be > 0 and --max-connections >= 1")

    def trace(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    settings = Settings(
        timeout=args.timeout,
        settle=args.settle,
        pause=args.pause,
        max_connections=args.max_connections,
        trace=trace if args.verbose else None,
    )
    report = run(args.host, args.port, settings, only)
    print(to_json(report) if args.json else format_table(report))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
