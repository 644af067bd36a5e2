"""Veredictos y su presentación: la tabla para personas y el JSON para herramientas."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum


class Verdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    NOT_CHECKABLE = "NOT CHECKABLE"


@dataclass(frozen=True, slots=True)
class Result:
    """El veredicto de un requisito, con la evidencia (líneas vistas) si falló."""

    key: str
    requirement: str
    title: str
    verdict: Verdict
    detail: str
    evidence: tuple[str, ...] = ()


@dataclass(slots=True)
class Report:
    """Todo lo que una ejecución descubrió del servidor y sus veredictos."""

    target: str
    framing: str = "unknown"
    identifiers: str = "unknown"
    connections: int = 0
    peak_connections: int = 0
    results: list[Result] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Éxito solo si ningún requisito verificable falló (y se verificó alguno)."""
        checked = [r for r in self.results if r.verdict is not Verdict.NOT_CHECKABLE]
        return bool(checked) and all(r.verdict is Verdict.PASS for r in checked)

    def summary(self) -> str:
        counts = {v: sum(r.verdict is v for r in self.results) for v in Verdict}
        return (
            f"{counts[Verdict.PASS]} passed, {counts[Verdict.FAIL]} failed, "
            f"{counts[Verdict.NOT_CHECKABLE]} not checkable "
            f"({self.connections} connections, at most {self.peak_connections} at once)"
        )


def format_table(report: Report) -> str:
    """La tabla de requisitos; bajo ella, la evidencia de cada fallo."""
    rows = [("req", "check", "verdict", "detail")]
    rows += [(r.requirement, r.key, r.verdict.value, r.detail) for r in report.results]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    out = [
        f"chatlib.check against {report.target}",
        f"framing:     {report.framing}",
        f"identifiers: {report.identifiers}",
        "",
    ]
    for row in rows:
        out.append(
            "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3]
        )
    # Un mismo fallo (el servidor no responde) se muestra una sola vez, con todas sus filas.
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for result in report.results:
        if result.verdict is Verdict.FAIL and result.evidence:
            groups.setdefault((result.detail, result.evidence), []).append(result.key)
    for (detail, shown), keys in groups.items():
        out += ["", f"{', '.join(keys)}: {detail}"]
        out += [f"    {line}" for line in shown]
    out += ["", ("OK: " if report.passed else "NOT OK: ") + report.summary()]
    return "\n".join(out)


def to_json(report: Report) -> str:
    """El mismo informe para herramientas (una nota por alumno, CI, etc.)."""
    data = {
        "target": report.target,
        "framing": report.framing,
        "identifiers": report.identifiers,
        "connections": report.connections,
        "peak_connections": report.peak_connections,
        "passed": report.passed,
        "results": [
            {**asdict(r), "verdict": r.verdict.value, "evidence": list(r.evidence)} for r in report.results
        ],
    }
    return json.dumps(data, indent=2, ensure_ascii=False)
