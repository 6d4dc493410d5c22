"""What a benchmark section produces (tables, targets, notes) and how it is written as Markdown and JSON."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from dataclasses import asdict, dataclass, field
from importlib.metadata import version

COMPARISONS = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "": lambda a, b: None}


@dataclass
class Table:
    columns: list[str]
    rows: list[list] = field(default_factory=list)
    caption: str = ""


@dataclass
class Target:
    """A figure checked against a bound (comparison "": a figure reported without a target).

    `cause` (why not met, what would close it) is printed only when not met.
    """

    name: str
    figure: float
    comparison: str
    bound: float
    detail: str = ""
    cause: str = ""
    met: bool | None = None

    def __post_init__(self) -> None:
        if self.comparison not in COMPARISONS:
            raise ValueError(f"comparison {self.comparison!r} is not one of {sorted(COMPARISONS)}")
        if self.met is None and self.comparison:
            self.met = bool(COMPARISONS[self.comparison](self.figure, self.bound))

    @property
    def verdict(self) -> str:
        if not self.comparison:
            return "reported"
        return "met" if self.met else "not met"

    @property
    def bound_text(self) -> str:
        return f"{self.comparison} {_cell(self.bound)}" if self.comparison else "(no target)"


@dataclass
class Section:
    key: str
    title: str
    method: str
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def environment(threads: int, quick: bool, note: str) -> dict:
    """Machine and library versions for the report header."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 if hasattr(os, "sysconf") else 0
    cpu += _isa_extensions()
    return {
        "command": "python -m benchmarks " + shlex.join(sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick (smoke test: small dimensions, few repetitions; figures are not meaningful)"
        if quick
        else "full",
        "machine": f"{cpu}, {os.cpu_count()} CPU cores, {memory:.0f} GiB RAM, no GPU",
        "torch_threads": threads,
        "load_average_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "versions": {name: version(name) for name in ("torch", "diffusers", "peft", "transformers")}
        | {"python": platform.python_version()},
        "note": note,
    }


def _isa_extensions() -> str:
    """The CPU's 8-bit and 16-bit matrix extensions, as /proc/cpuinfo lists them: which int8 / bf16 kernels
    a runtime can use differs with them, and the machine may change between sessions."""
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next(line.split(":", 1)[1].split() for line in handle if line.startswith("flags"))
    except (OSError, StopIteration):
        return ""
    return " (" + " ".join(flag for flag in wanted if flag in flags) + ")"


def _cell(value) -> str:
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1e5 or abs(value) < 1e-3:
            return f"{value:.3e}"
        return f"{value:.4g}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _table_markdown(table: Table) -> list[str]:
    lines = [f"*{table.caption}*", ""] if table.caption else []
    lines.append("| " + " | ".join(table.columns) + " |")
    lines.append("|" + "---|" * len(table.columns))
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in table.rows]
    return lines + [""]


def _target_line(target: Target) -> str:
    line = f"- **{target.verdict}** — {target.name}: {_cell(target.figure)} (target {target.bound_text})"
    if target.detail:
        line += f"; {target.detail}"
    if target.met is False and target.cause:
        line += f"\n  - *Why, and what would close it:* {target.cause}"
    return line


def summary_table(sections: list[Section]) -> Table:
    rows = [
        [section.title, target.name, _cell(target.figure), target.bound_text, target.verdict]
        for section in sections
        for target in section.targets
    ]
    return Table(["section", "figure", "measured", "target", "verdict"], rows)


def to_markdown(env: dict, sections: list[Section], total_seconds: float) -> str:
    versions = ", ".join(f"{name} {value}" for name, value in env["versions"].items())
    lines = [
        "# mtu benchmarks",
        "",
        f"Generated by `{env['command']}` on {env['date']} in {total_seconds:.0f} s — do not edit by hand.",
        "",
        f"- Mode: {env['mode']}",
        f"- Machine: {env['machine']}; torch threads: {env['torch_threads']}; load average at start: "
        f"{env['load_average_at_start']}",
        f"- Versions: {versions}",
    ]
    if env["note"]:
        lines.append(f"- Note: {env['note']}")
    for update in env.get("updates", []):
        lines.append(
            f"- Updated: section(s) {', '.join(update['sections'])} re-measured on {update['date']} by "
            f"`{update['command']}` ("
            + (f"machine: {update['machine']}; " if update.get("machine") else "")
            + f"load average at start {update['load_average_at_start']}"
            + (f"; {update['note']}" if update["note"] else "")
            + "); the other sections keep the figures of the run above."
        )
    lines += [
        "- Method: every figure is the median of several repetitions after warm-up; the compared variants "
        "alternate within each repetition (`benchmarks/timing.py`) and ratios are medians of per-repetition "
        "ratios. Absolute times on this shared CPU are noise; only the ratios are claims.",
        "",
        "## Summary",
        "",
        *_table_markdown(summary_table(sections)),
    ]
    for number, section in enumerate(sections, start=1):
        lines += [f"## {number}. {section.title}", "", section.method, ""]
        for table in section.tables:
            lines += _table_markdown(table)
        if section.targets:
            lines += [_target_line(target) for target in section.targets] + [""]
        lines += [f"- {note}" for note in section.notes]
        lines += ["", f"<sub>section time: {section.seconds:.0f} s</sub>", ""]
    return "\n".join(lines).rstrip() + "\n"


def sections_from_json(data: dict) -> dict[str, Section]:
    """The sections of a JSON report written by `to_json`, rebuilt (for `--update`)."""
    sections = {}
    for key, fields in data["sections"].items():
        fields = dict(fields)
        fields["tables"] = [Table(**table) for table in fields["tables"]]
        fields["targets"] = [Target(**target) for target in fields["targets"]]
        sections[key] = Section(**fields)
    return sections


def to_json(env: dict, sections: list[Section], total_seconds: float) -> dict:
    return {
        "environment": env,
        "total_seconds": total_seconds,
        "sections": {section.key: asdict(section) for section in sections},
    }
