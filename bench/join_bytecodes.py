"""Cuánto Python ejecuta un servidor por alta: instrucciones de *bytecode* contadas en todos sus hilos.

Es la medida determinista detrás de la fila de altas (``joins/s``), que en
esta VM se mueve ±20 % entre corridas. El servidor corre en este proceso, con
``threading.settrace`` en todos sus hilos (el de aceptación, el de cada
sesión, la consola y el ``Flusher``); la carga es la misma de ``make bench``
(``bench.driver.joins``: conectarse, responder el saludo y salir con ``:q``,
32 en vuelo) y corre en un subproceso, así que no se cuenta. Un calentamiento
de 100 altas va antes de empezar a contar.

``--server floor`` mide el techo de ``bench/floor_server.py`` con avisos y la
E/S portable de chatlib (la fila ``floor+portable``): lo mínimo que un hilo por
conexión hace por alta. Imprime el total por alta y las funciones que más
instrucciones ejecutaron (por alta).

Uso: ``python bench/join_bytecodes.py [--server chatlib|floor] [--joins 1000] [--top 30]``.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chatlib.server import ChatServer  # noqa: E402

from bench import floor_server  # noqa: E402

# El generador de carga, en otro proceso: calienta, avisa y espera la orden de medir.
LOAD = """
import sys
sys.path.insert(0, {root!r})
from bench import driver
address = ({host!r}, {port})
driver.joins(address, 100)
print("ready", flush=True)
sys.stdin.readline()
result = driver.joins(address, {joins}, concurrency={concurrency})
print(result.joins, result.failures, flush=True)
"""


class OpcodeCounter:
    """Función de traza que cuenta instrucciones por función mientras ``counting`` es verdadero."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.counting = False

    def trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        if not self.counting:
            return None
        if event == "call":
            frame.f_trace_opcodes = True
            frame.f_trace_lines = False
            return self.trace
        if event == "opcode":
            code = frame.f_code
            self.counts[f"{code.co_qualname} ({os.path.basename(code.co_filename)})"] += 1
        return self.trace


def start_server(kind: str, wake: socket.socket) -> tuple[tuple[str, int], Callable[[], None]]:
    """Arranca el servidor en este proceso (sus hilos ya trazados); retorna su dirección y cómo detenerlo.

    ``wake`` es el despertador que el piso vigila en cada espera, como chatlib (nadie escribe en él).
    """
    if kind == "chatlib":
        # La consola real escribiría en esta salida: se cuenta todo su camino, sin imprimir.
        server = ChatServer(port=0, console=lambda line: None, max_clients=4096)
        return server.start(), server.stop
    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
    # Como en ``floor_server.py``, sus hilos son demonios: terminan con el proceso.
    accept = threading.Thread(
        target=floor_server.serve, args=(listener, floor_server.Members(), wake), daemon=True
    )
    accept.start()
    host, port = listener.getsockname()[:2]
    return (host, port), listener.close


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=("chatlib", "floor"), default="chatlib")
    parser.add_argument("--joins", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    counter = OpcodeCounter()
    # Antes de arrancar: así también el hilo de aceptación queda trazado.
    threading.settrace(counter.trace)
    wake, wake_w = socket.socketpair()
    (host, port), stop = start_server(args.server, wake)
    script = LOAD.format(root=str(ROOT), host=host, port=port, joins=args.joins, concurrency=args.concurrency)
    load = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert load.stdin is not None and load.stdout is not None
    if load.stdout.readline().strip() != "ready":
        raise SystemExit("the load generator did not start")
    counter.counting = True
    load.stdin.write("\n")
    load.stdin.flush()
    joined, failed = (int(x) for x in load.stdout.readline().split())
    counter.counting = False
    load.wait()
    if failed or joined != args.joins:
        raise SystemExit(f"{failed} joins failed, {joined} of {args.joins} done")
    total = sum(counter.counts.values())
    per_join = total / joined
    print(f"{args.server}: {per_join:,.0f} bytecodes per join ({joined} joins, {args.concurrency} in flight)")
    print(f"{'per join':>9}  function")
    for name, count in counter.counts.most_common(args.top):
        print(f"{count / joined:9.1f}  {name}")
    threading.settrace(None)
    stop()
    wake.close()
    wake_w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
