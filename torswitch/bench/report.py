"""Benchmark results: a flat dict of named figures plus a printable table.

Figure keys carry their unit (`lookups_per_s`, `_ratio`, `_mpps`, `_gbps`, `_us`), so the JSON
output is self-describing. Targets are recorded as (figure, comparison, threshold) and reported
as met or not; benchmarks never fail a build, they report.
"""

from __future__ import annotations

import json
import operator
from dataclasses import dataclass, field
from typing import Any

_OPS = {">=": operator.ge, "<=": operator.le}


@dataclass
class Target:
    figure: str
    op: str
    threshold: float

    def met(self, figures: dict[str, Any]) -> bool:
        value = figures.get(self.figure)
        return isinstance(value, (int, float)) and _OPS[self.op](value, self.threshold)


@dataclass
class Report:
    """What a benchmark measured.

    `figures` is the JSON object; `columns`/`rows` the table printed for humans.
    """

    name: str
    figures: dict[str, Any] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def target_results(self) -> dict[str, bool]:
        return {f"{t.figure} {t.op} {t.threshold:g}": t.met(self.figures) for t in self.targets}

    def to_json(self) -> str:
        out = dict(self.figures)
        if self.targets:
            out["targets_met"] = self.target_results()
        return json.dumps(out, indent=2, sort_keys=True)

    def to_table(self) -> str:
        cells = [[_fmt(c) for c in row] for row in self.rows]
        widths = [len(c) for c in self.columns]
        for row in cells:
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
        line = "  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True))
        out = [f"torswitch bench {self.name}", "", line, "-" * len(line)]
        out += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
        if self.targets:
            out.append("")
            for desc, ok in self.target_results().items():
                value = self.figures.get(desc.split()[0])
                out.append(f"target {desc}: {'met' if ok else 'NOT met'} ({_fmt(value)})")
        out += self.notes
        return "\n".join(out)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value >= 1e6:
            return f"{value / 1e6:.2f}M"
        if value >= 1e3:
            return f"{value / 1e3:.1f}k"
        return f"{value:.3g}"
    return str(value)
