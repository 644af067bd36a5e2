"""La arquitectura como hechos comprobables: el producto no depende del laboratorio."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("protocol", "bank", "outbox", "server", "client")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_product_never_imports_matplotlib_and_the_lab_only_behind_unsafe_bank() -> None:
    for module in PRODUCT:
        imported = _imports(ROOT / "chatlib" / f"{module}.py")
        assert not {name for name in imported if name.split(".")[0] == "matplotlib"}, module
        lab = {name for name in imported if name.startswith("chatlib.lab")}
        assert lab == ({"chatlib.lab"} if module == "server" else set()), (module, lab)


def test_unsafe_bank_runs_without_matplotlib() -> None:
    """Una instalación sin matplotlib (sin el extra ``notebooks``) ejecuta ``--unsafe-bank``."""
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "import chatlib.server\n"
        "from chatlib.lab import unsafe_bank\n"
        "bank = unsafe_bank(0.0)\n"
        "bank.open('a', 5); bank.open('b', 0); bank.transfer('a', 'b', 5)\n"
        "print(type(bank).__name__, bank.accounts())\n"
        "assert 'matplotlib' not in {m.split('.')[0] for m in sys.modules if sys.modules[m] is not None}\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "UnsafeBank {'a': 0, 'b': 5}"


def test_the_checker_builds_only_on_the_protocol() -> None:
    """``chatlib.check`` prueba servidores ajenos: no puede depender del servidor de referencia."""
    for path in (ROOT / "chatlib" / "check").glob("*.py"):
        ours = {name for name in _imports(path) if name.startswith("chatlib")}
        assert ours <= {"chatlib", "chatlib.protocol"} | {
            f"chatlib.check.{p.stem}" for p in (ROOT / "chatlib" / "check").glob("*.py")
        }, (path.name, ours)
