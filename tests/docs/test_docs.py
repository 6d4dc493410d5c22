"""The hand-written pages agree with the records and with the code (issue 29).

- Figures: the README's "what works today" box is generated from the shapes-mtu model card and RESULTS.md
  (`python -m tests.docs.figures` rewrites it); each figure a page quotes from RESULTS.md, BENCHMARKS.md or
  a model card is found by its phrase and compared with the record at the precision the page quotes it;
  the quickstart's time, which no generated record holds, is quoted once with its source and date, and
  every other quote of it (pages, `mtu quickstart --help`) must agree.
- Commands: every `mtu <command> --flag` quoted in README.md and docs/*.md exists in the command line's
  own parser (built in-process: no subprocess per flag).
- Links: every relative link and every mentioned Markdown file or repository path resolves; anchors match
  a heading of their page.

When a check fails because a page was reworded, update the phrase here together with the page; when it
fails because a record was regenerated, update the page's figure (never the record).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from mtu.cli.main import build_parser
from tests.docs import figures
from tests.docs.figures import ROOT, number

PAGES = [figures.README, *sorted((ROOT / "docs").glob("*.md"))]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def flat(path: Path) -> str:
    """A page's text with every run of whitespace (line breaks included) as one space."""
    return " ".join(path.read_text().split())


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# ---------------------------------------------------------------------------------------------- figures


def agrees(quoted: str, value: float) -> bool:
    """A quoted figure agrees with the record when it is the record rounded to the quoted precision."""
    quoted = quoted.replace(",", "")
    decimals = len(quoted.split(".")[1]) if "." in quoted else 0
    return abs(float(quoted) - value) <= 0.5 * 10**-decimals + 1e-9


def card_score(task: str, key: str) -> float:
    return figures.card_scores()[task][key]


def main_table(method: str, column: str, source: Path = figures.RESULTS) -> float:
    return number(figures.results_main_table(source.read_text())[method][column])


def cost(method: str, key: str, source: Path = figures.RESULTS) -> float:
    return figures.results_cost_table(source.read_text())[method][key]


def summary(figure: str) -> float:
    return figures.benchmark_summary()[figure]


def bench_cell(section: str, table: int, first_cell: str, column: str, where: dict | None = None) -> float:
    """A cell of a BENCHMARKS.md table, its row named by its first cell (and `where`: other cells)."""
    rows = figures.benchmark_tables(section)[table]
    (row,) = [
        row
        for row in rows
        if next(iter(row.values())) == first_cell and all(row[k] == v for k, v in (where or {}).items())
    ]
    return number(row[column])


def bench_text(pattern: str, group: int) -> float:
    return number(re.search(pattern, " ".join(figures.BENCHMARKS.read_text().split())).group(group))


def results_row(section: str, method_prefix: str, column: str, source: Path = figures.RESULTS) -> float:
    (rows,) = [rows for rows in figures.tables(figures.section(source.read_text(), section)) if rows][:1]
    exact = [row for row in rows if row["method"] == method_prefix]  # "N = 1" is also the start of "N = 16"
    (row,) = exact or [row for row in rows if row["method"].startswith(method_prefix)]
    return number(row[column])


def results_difference(row_prefix: str, column: str, index: int, source: Path = figures.RESULTS) -> float:
    """A number of the add-task differences table: index 0 the difference, 1 and 2 its interval."""
    body = figures.section(source.read_text(), "Adding a task later")
    rows = [
        row for rows in figures.tables(body) for row in rows if "difference (add-task - other) [95% interval]" in row
    ]
    (row,) = [row for row in rows if row["difference (add-task - other) [95% interval]"].startswith(row_prefix)]
    return [float(x) for x in re.findall(r"[+-]?\d+\.\d+", row[column])][index]


def adding(method_prefix: str, column: str, source: Path = figures.RESULTS) -> float:
    body = figures.section(source.read_text(), "Adding a task later")
    rows = [row for rows in figures.tables(body) for row in rows if "method" in row]
    (row,) = [row for row in rows if row["method"].startswith(method_prefix)]
    return number(row[column])


def results_routing(seed: int) -> float:
    """Layers routing by task in the main table's MTU run of `seed` (RESULTS.md's router-health lines)."""
    return float(re.search(rf"- seed {seed}: (\d+) of 13 layers route by task", figures.RESULTS.read_text()).group(1))


def sd_ratio_percent(model: str) -> float:
    return (bench_cell("3.", 0, model, "MTU / base") - 1) * 100


def shapes_params_percent() -> float:
    return (cost("MTU (N=4)", "params") / cost("base model", "params") - 1) * 100


def shapes_base_card(pattern: str, group: int = 1) -> float:
    text = " ".join((ROOT / "src/mtu/assets/shapes-base/README.md").read_text().split())
    return number(re.search(pattern, text).group(group))


def shipped_megabytes() -> float:
    return (ROOT / "src/mtu/assets/shapes-mtu/mtu_model.safetensors").stat().st_size / 1e6


@dataclass(frozen=True)
class Quote:
    """`pattern`'s groups, found in `page`, are the figures `values` returns (in order), as the page rounds them."""

    page: str
    pattern: str
    values: Callable[[], list[float]]

    @property
    def id(self) -> str:
        return f"{self.page}: {self.pattern[:60]}"


V2 = figures.RESULTS_V2  # figures of the v2 reading (docs/reproduction.md, docs/training.md)

QUOTES = [
    # README: cost of MTU per call, on both models, each with its source
    Quote(
        "README.md",
        r"\+([\d.]+)% on SD1\.5 and \+([\d.]+)% on SDXL \(BENCHMARKS\.md §3",
        lambda: [sd_ratio_percent("SD1.5"), sd_ratio_percent("SDXL")],
    ),
    Quote("README.md", r"\+([\d.]+)% on the shipped shapes-base \(RESULTS\.md", lambda: [shapes_params_percent()]),
    Quote("README.md", r"([\d.]+)x on the SD1\.5 UNet \(BENCHMARKS\.md §2", lambda: [summary("MTU live / base")]),
    Quote(
        "README.md",
        r"([\d.]+)x on the 5\.9M-parameter shapes-base UNet \(RESULTS\.md",
        lambda: [cost("MTU (N=4)", "latency")],
    ),
    Quote(
        "README.md",
        r"an exported task is a stock UNet, ([\d.]+)x \(§2\)",
        lambda: [bench_cell("2.", 0, "exported ('t2i')", "time / base")],
    ),
    Quote("README.md", r"MTU live routing ([\d.]+)x the base\)", lambda: [summary("MTU live / base")]),
    Quote(
        "README.md",
        r"shapes-base at batch 1: MTU ([\d.]+)x, single-task models ([\d.]+)x, LoRA-FFN ([\d.]+)x, IA3-FFN ([\d.]+)x",
        lambda: [cost(m, "latency") for m in ("MTU (N=4)", "single-task models", "LoRA-FFN", "IA3-FFN")],
    ),
    Quote(
        "README.md",
        r"a cached step took ([\d.]+)x the uncached step's time, BENCHMARKS\.md §7",
        lambda: [summary("cached / uncached step time, 4 tasks")],
    ),
    # README: deploy figures (BENCHMARKS.md §11, §12) and the allocator (§9)
    Quote(
        "README.md",
        r"on shapes-base fp32 ([\d.]+)x, int8 ([\d.]+)x, int8-static ([\d.]+)x; at SD1\.5 size \(random weights, "
        r"64x64 latent\) fp32 ([\d.]+)x, int8 ([\d.]+)x, int8-static ([\d.]+)x",
        lambda: [
            summary(f"{model}: {variant} / PyTorch eager fp32, time")
            for model in ("shapes-base", "SD1.5 (random weights)")
            for variant in ("ONNX fp32, t2i graph", "ONNX int8, all-tasks graph", "ONNX int8-static, all-tasks graph")
        ],
    ),
    Quote(
        "README.md",
        r"costs ([\d.]+)x \(SD1\.5\) / ([\d.]+)x \(shapes-base\) the one-task graph's time and ([\d.]+)x / "
        r"([\d.]+)x its file",
        lambda: [
            summary("SD1.5 (random weights): ONNX fp32, all-tasks graph / ONNX fp32, t2i graph, time"),
            summary("shapes-base: ONNX fp32, all-tasks graph / ONNX fp32, t2i graph, time"),
            summary("SD1.5 (random weights): all-tasks / t2i graph, file size"),
            summary("shapes-base: all-tasks / t2i graph, file size"),
        ],
    ),
    *(
        Quote(
            page,
            r"OpenVINO fp32 folder[^.]*? gives PyTorch's scores[^;]*?; (?:its )?int8 stays within ([\d.]+) dB and "
            r"(\d+) points?; (?:its )?int8-static within ([\d.]+) dB but (\d+)",
            lambda: [
                summary(f"quality: OpenVINO {m} vs PyTorch, largest |{metric} difference| ({unit})")
                for m in ("int8", "int8-static")
                for metric, unit in (("PSNR", "dB"), ("all-correct", "points"))
            ],
        )
        for page in ("README.md", "docs/deploy.md")
    ),
    Quote(
        "README.md",
        r"both int8 modes stay within ([\d.]+) dB PSNR and (\d+) points of all-correct",
        lambda: [
            max(
                summary(f"quality: ONNX {m} vs ONNX fp32, largest |PSNR difference| (dB)")
                for m in ("int8", "int8-static")
            ),
            max(
                summary(f"quality: ONNX {m} vs ONNX fp32, largest |all-correct difference| (points)")
                for m in ("int8", "int8-static")
            ),
        ],
    ),
    Quote(
        "README.md",
        r"an SD1\.5 forward took ([\d.]+)x the time \(BENCHMARKS\.md §9",
        lambda: [summary("SD1.5 (random weights): allocator-tuned / default forward time")],
    ),
    # README: the shipped models, from their cards
    Quote("README.md", r"MTU weights are shipped \(([\d.]+) MB\)", lambda: [shipped_megabytes()]),
    Quote(
        "README.md",
        r"all attributes right for \*\*(\d+)%\*\* of single-object captions, ([\d.]+)% of two-object and ([\d.]+)% "
        r"of three-object ones; VAE reconstructions ([\d.]+) dB PSNR",
        lambda: [
            shapes_base_card(r"\| 1 object\(s\) \| \d+ \| ([\d.]+)%"),
            shapes_base_card(r"\| 2 object\(s\) \| \d+ \| ([\d.]+)%"),
            shapes_base_card(r"\| 3 object\(s\) \| \d+ \| ([\d.]+)%"),
            shapes_base_card(r"VAE on 500 held-out scenes \(seed 0\): PSNR \*\*([\d.]+) dB"),
        ],
    ),
    Quote(
        "README.md",
        r"([\d.]+)% vs ([\d.]+)% all correct over the 500 captions, 100% single-object, VAE ([\d.]+) vs ([\d.]+) dB",
        lambda: [
            shapes_base_card(r"\| re-run \| 1 \|[^|]*\| [\d.]+ \| [\d.]+ dB \| [\d.]+% \| ([\d.]+)%"),
            shapes_base_card(r"\| this folder \| 0 \|[^|]*\| [\d.]+ \| [\d.]+ dB \| [\d.]+% \| ([\d.]+)%"),
            shapes_base_card(r"\| re-run \| 1 \|[^|]*\| [\d.]+ \| ([\d.]+) dB"),
            shapes_base_card(r"\| this folder \| 0 \|[^|]*\| [\d.]+ \| ([\d.]+) dB"),
        ],
    ),
    Quote(
        "README.md",
        r"wall-clock: ([\d.]+) min on one H200 GPU",
        lambda: [shapes_base_card(r"\| this folder \| 0 \|[^|]*\| ([\d.]+) \|")],
    ),
    Quote(
        "README.md",
        r"\(`mtu reproduce`: ([\d,]+) mixed-task steps, ([\d,]+) per task",
        lambda: [number(figures.card_training()["steps"]), number(figures.card_training()["per_task"])],
    ),
    # docs/demo.md: what to expect from shapes-mtu
    Quote(
        "docs/demo.md",
        r"right ([\d.]+) of the time \(the base model: ([\d.]+), RESULTS\.md\) and inpainting ([\d.]+);",
        lambda: [
            card_score("t2i", "all_correct"),
            main_table("base model", "t2i all-correct"),
            card_score("inpaint", "all_correct"),
        ],
    ),
    Quote(
        "docs/demo.md",
        r"is right about 1 time in (\d+) \(([\d.]+); copying the input: ([\d.]+)\)",
        lambda: [
            round(1 / card_score("edit", "all_correct")),
            card_score("edit", "all_correct"),
            card_score("edit", "baseline_all_correct"),
        ],
    ),
    Quote(
        "docs/demo.md",
        r"\"remove the blue square\" ([\d.]+) of the time \(below the reproduction's ([\d.]+) bar\), and an upscale "
        r"([\d.]+) of the time, less often than bicubic upscaling \(([\d.]+)\)",
        lambda: [
            card_score("remove", "all_correct"),
            figures.results_bar()["all_correct"],
            card_score("sr", "all_correct"),
            card_score("sr", "baseline_all_correct"),
        ],
    ),
    # docs/training.md
    Quote(
        "docs/training.md",
        r"([\d.]+) s per cached step vs ([\d.]+) s \(4 tasks; ([\d.]+) vs ([\d.]+) s with 5\): ([\d.]+)x of the "
        r"uncached step time",
        lambda: [
            bench_cell("7.", 0, "4", "cached s/step"),
            bench_cell("7.", 0, "4", "uncached s/step"),
            bench_cell("7.", 0, "5", "cached s/step"),
            bench_cell("7.", 0, "5", "uncached s/step"),
            summary("cached / uncached step time, 4 tasks"),
        ],
    ),
    Quote(
        "docs/training.md",
        r"ran a step at ([\d.]+)x its time alone, against ([\d.]+)x with torch's default of every core",
        lambda: [
            bench_cell("10.", 0, "default, beside one busy process", "vs alone"),
            bench_cell("10.", 0, "--threads 2 (torch's default), beside one busy process", "vs alone"),
        ],
    ),
    Quote(
        "docs/training.md",
        r"filling costs ([\d.]+) ms per example once",
        lambda: [bench_cell("7.", 1, "5", "ms per example")],
    ),
    Quote(
        "docs/training.md",
        r"an uncached 5-task step takes ([\d.]+) s on one thread",
        lambda: [bench_cell("7.", 0, "5", "uncached s/step")],
    ),
    Quote(
        "docs/training.md",
        r"MTU's t2i fell ([+-]?[\d.]+) points below the base.{0,300}?with v3's routers at the base rate, "
        r"([+-]?[\d.]+) points",
        lambda: [figures.results_t2i_kept(figures.RESULTS_V2.read_text()), figures.results_t2i_kept()],
    ),
    Quote(
        "docs/training.md",
        r"add-task ([\d.]+) dB / all-correct ([\d.]+), copying the grayscale input ([\d.]+) / ([\d.]+), MTU trained "
        r"on all five tasks from the start ([\d.]+) / ([\d.]+) \(add-task minus joint ([+-][\d.]+) dB "
        r"\[([+-][\d.]+), ([+-][\d.]+)\]",
        lambda: [
            adding("added to the trained", "PSNR (dB)", V2),
            adding("added to the trained", "all-correct", V2),
            adding("no-learning baseline", "PSNR (dB)", V2),
            adding("no-learning baseline", "all-correct", V2),
            adding("jointly from the start", "PSNR (dB)", V2),
            adding("jointly from the start", "all-correct", V2),
            *(results_difference("add-task - jointly", "PSNR (dB)", i, V2) for i in range(3)),
        ],
    ),
    Quote(
        "docs/training.md",
        r"one more LoRA adapter ([\d.]+) / ([\d.]+) \(ahead of add-task by ([\d.]+) dB",
        lambda: [
            adding("one more LoRA adapter", "PSNR (dB)", V2),
            adding("one more LoRA adapter", "all-correct", V2),
            -results_difference("add-task - LoRA", "PSNR (dB)", 0, V2),
        ],
    ),
    # docs/reproduction.md
    Quote(
        "docs/reproduction.md",
        r"MTU runs the base's FLOPs per call \(([\d.]+) GFLOPs\) with ([\d.]+)% more parameters",
        lambda: [cost("base model", "gflops"), shapes_params_percent()],
    ),
    Quote(
        "docs/reproduction.md",
        r"MTU ([\d.]+)x the base, the single-task models ([\d.]+)x; LoRA-FFN ([\d.]+)x \(its adapter adds FLOPs: "
        r"([\d.]+) GFLOPs\), IA3-FFN ([\d.]+)x",
        lambda: [
            cost("MTU (N=4)", "latency", V2),
            cost("single-task models", "latency", V2),
            cost("LoRA-FFN", "latency", V2),
            cost("LoRA-FFN", "gflops", V2),
            cost("IA3-FFN", "latency", V2),
        ],
    ),
    Quote(
        "docs/reproduction.md",
        r"BENCHMARKS\.md §2 measures MTU with live routing at ([\d.]+)x the base",
        lambda: [summary("MTU live / base")],
    ),
    # docs/reproduction.md, "Reading the v3 results" (RESULTS.md)
    Quote(
        "docs/reproduction.md",
        r"route by task \(JS >= 0\.05 bits\): (\d+) / (\d+) / (\d+) of 13 in seeds 0 / 1 / 2",
        lambda: [results_routing(seed) for seed in (0, 1, 2)],
    ),
    Quote(
        "docs/reproduction.md",
        r"MTU's t2i ([\d.]+) against the base's ([\d.]+) \(([+-][\d.]+) points",
        lambda: [
            main_table("MTU (N=4)", "t2i all-correct"),
            main_table("base model", "t2i all-correct"),
            figures.results_t2i_kept(),
        ],
    ),
    Quote(
        "docs/reproduction.md",
        r"MTU's t2i is within a point of v2's \(([\d.]+)\), and its sr too \(([\d.]+) against ([\d.]+) dB\)",
        lambda: [
            main_table("MTU (N=4)", "t2i all-correct", V2),
            main_table("MTU (N=4)", "sr PSNR (dB)"),
            main_table("MTU (N=4)", "sr PSNR (dB)", V2),
        ],
    ),
    Quote(
        "docs/reproduction.md",
        r"miss the bar on test: edit ([\d.]+), remove ([\d.]+) all-correct\)",
        lambda: [main_table("single-task models", c) for c in ("edit all-correct", "remove all-correct")],
    ),
    Quote(
        "docs/reproduction.md",
        r"clears remove's bar on test in every seed \(([\d.]+) all-correct, ([\d.]+) dB\)",
        lambda: [main_table("MTU (N=4)", c) for c in ("remove all-correct", "remove PSNR (dB)")],
    ),
    Quote(
        "docs/reproduction.md",
        r"full fine-tuning rises fastest and still ends far from the bar \(([\d.]+) at 8,000 steps = 4 x S, "
        r"measured; a straight line through its last two points reaches the bar near ([\d,]+) steps",
        lambda: [
            number(x)
            for x in re.search(
                r"`edit-full` \(method: full\): .*?([\d.]+) at 8,000 steps .*?near ([\d,]+) steps",
                figures.RESULTS.read_text(),
            ).groups()
        ],  # fmt: skip
    ),
    Quote(
        "docs/reproduction.md",
        r"stays undecidable\)\.\*\* sr ([\d.]+) dB / all-correct ([\d.]+) and remove ([\d.]+) / ([\d.]+) .{0,120}?"
        r"against the 4-task MTU's sr ([\d.]+) / ([\d.]+) and the single-task models' ([\d.]+) / ([\d.]+)\.",
        lambda: [
            *(results_row("Task pairs", "sr + remove", c) for c in ("sr PSNR (dB)", "sr all-correct")),
            *(results_row("Task pairs", "sr + remove", c) for c in ("remove PSNR (dB)", "remove all-correct")),
            *(main_table("MTU (N=4)", c) for c in ("sr PSNR (dB)", "sr all-correct")),
            *(main_table("single-task models", c) for c in ("sr PSNR (dB)", "sr all-correct")),
        ],
    ),
    Quote(
        "docs/reproduction.md",
        r"t2i\s+all-correct ([\d.]+) / ([\d.]+) / ([\d.]+) for N = 1 / 4 / 16; sr ([\d.]+) / ([\d.]+) / ([\d.]+) dB",
        lambda: [
            *(results_row("Number of experts", f"N = {n}", "t2i all-correct") for n in (1, 4, 16)),
            *(results_row("Number of experts", f"N = {n}", "sr PSNR (dB)") for n in (1, 4, 16)),
        ],
    ),
    Quote(
        "docs/reproduction.md",
        r"trained alone, colorize scores ([\d.]+) dB / all-correct ([\d.]+); trained with the others from the start, "
        r"([\d.]+) / ([\d.]+) \(add-task minus joint ([+-][\d.]+) dB .{0,120}?one more LoRA adapter, "
        r"([\d.]+) / ([\d.]+),",
        lambda: [
            adding("added to the trained", "PSNR (dB)"),
            adding("added to the trained", "all-correct"),
            adding("jointly from the start", "PSNR (dB)"),
            adding("jointly from the start", "all-correct"),
            results_difference("add-task - jointly", "PSNR (dB)", 0),
            adding("one more LoRA adapter", "PSNR (dB)"),
            adding("one more LoRA adapter", "all-correct"),
        ],
    ),
    Quote(
        "docs/reproduction.md",
        r"MTU ([\d.]+) against the base's ([\d.]+) \(([+-][\d.]+) points",
        lambda: [
            main_table("MTU (N=4)", "t2i all-correct", V2),
            main_table("base model", "t2i all-correct", V2),
            figures.results_t2i_kept(V2.read_text()),
        ],
    ),
    Quote(
        "docs/reproduction.md",
        r"reads ([\d.]+)-([\d.]+) s cached and ([\d.]+)-([\d.]+) s uncached",
        lambda: [
            bench_cell("7.", 0, "4", "cached s/step"),
            bench_cell("7.", 0, "5", "cached s/step"),
            bench_cell("7.", 0, "4", "uncached s/step"),
            bench_cell("7.", 0, "5", "uncached s/step"),
        ],
    ),
    Quote(
        "docs/reproduction.md",
        r"BENCHMARKS\.md §7 measured ([\d.]+) ms",
        lambda: [bench_cell("7.", 1, "5", "ms per example")],
    ),
    Quote("docs/reproduction.md", r"its MTU weights alone \(([\d.]+) MB", lambda: [shipped_megabytes()]),
    Quote(
        "docs/reproduction.md",
        r"MTU on five tasks ([\d.]+) dB inside the hole / all-correct ([\d.]+), the single-task model ([\d.]+) / "
        r"([\d.]+)",
        lambda: [
            results_row("Extra", "MTU on all tasks", "inpaint PSNR (dB)", V2),
            results_row("Extra", "MTU on all tasks", "inpaint all-correct", V2),
            results_row("Extra", "single-task", "inpaint PSNR (dB)", V2),
            results_row("Extra", "single-task", "inpaint all-correct", V2),
        ],
    ),
    # docs/reliability.md
    Quote(
        "docs/reliability.md",
        r"\| ([\d.]+) s \(BENCHMARKS\.md §10\): `import mtu`",
        lambda: [summary("`mtu --help` wall time (s)")],
    ),
    Quote("docs/reliability.md", r"`mtu --help`: ([\d.]+) s \(goal", lambda: [summary("`mtu --help` wall time (s)")]),
    Quote(
        "docs/reliability.md",
        r"alone ([\d.]+) s/step; beside one busy-looping process ([\d.]+) s/step \(([\d.]+)x, goal <= 2x\); torch's "
        r"own default beside it ([\d.]+) s/step \(([\d.]+)x\)",
        lambda: [
            bench_cell("10.", 0, "default, alone", "s/step"),
            bench_cell("10.", 0, "default, beside one busy process", "s/step"),
            bench_cell("10.", 0, "default, beside one busy process", "vs alone"),
            bench_cell("10.", 0, "--threads 2 (torch's default), beside one busy process", "s/step"),
            bench_cell("10.", 0, "--threads 2 (torch's default), beside one busy process", "vs alone"),
        ],
    ),
    Quote(
        "docs/reliability.md",
        r"an `mtu train` step took ([\d.]+)x the time with it \(BENCHMARKS\.md §9",
        lambda: [summary("training step, allocator-tuned / default (cached latents, 4 tasks)")],
    ),
    Quote(
        "docs/reliability.md",
        r"took ([\d.]+)x the time \(page faults per forward ([\d,]+) -> 0; output identical\)\. A shapes-base "
        r"forward \(16x16, batch 2\) took ([\d.]+)x",
        lambda: [
            summary("SD1.5 (random weights): allocator-tuned / default forward time"),
            bench_cell("9.", 0, "PyTorch eager (glibc default)", "page faults per forward"),
            summary("shapes-base: allocator-tuned / default forward time (no loss)"),
        ],
    ),
    Quote(
        "docs/reliability.md",
        r"`unet\.to\(memory_format=torch\.channels_last\)`\) \| ([\d.]+)x \| ([\d.]+)x \|",
        lambda: [
            summary("SD1.5 (random weights): channels-last / eager forward time (tried)"),
            summary("shapes-base: channels-last / eager forward time (tried)"),
        ],
    ),
    Quote(
        "docs/reliability.md",
        r"`torch\.utils\.mkldnn\.to_mkldnn`\) \| ([\d.]+)x \| ([\d.]+)x \|",
        lambda: [
            summary("SD1.5 (random weights): oneDNN-packed layers / eager forward time (tried)"),
            summary("shapes-base: oneDNN-packed layers / eager forward time (tried)"),
        ],
    ),
    Quote(
        "docs/reliability.md",
        r"([\d.]+)x per forward; setup \+ first call \(the compile\) (\d+) s in the benchmark, from a cold cache "
        r".* ([\d.]+) ms saved "
        r"per forward pays the benchmark's (\d+) s compile back only after ([\d,]+) forwards",
        lambda: [
            summary("shapes-base: torch.compile (freezing) / eager forward time (tried)"),
            bench_text(r"torch\.compile \(shapes-base\): (\d+) s to compile", 1),
            bench_text(r"against ([\d.]+) ms saved per forward", 1),
            bench_text(r"torch\.compile \(shapes-base\): (\d+) s to compile", 1),
            bench_text(r"pays back after ([\d,]+) forwards", 1),
        ],
    ),
    Quote(
        "README.md",
        r"on SD1\.5 a denoiser call took ([\d.]+)x PyTorch eager's time in OpenVINO fp32, ([\d.]+)x with int8 weights "
        r"and\s+([\d.]+)x in int8-static \(goals 0\.6 and 0\.4: only int8-static meets its goal\), "
        r"and ([\d.]+)x in bf16",
        lambda: [
            summary(f"SD1.5 (random weights), 1 thread(s): OpenVINO {m}, all-tasks graph / PyTorch eager fp32, time")
            for m in ("fp32", "int8", "int8-static", "bf16")
        ],
    ),
    Quote(
        "README.md",
        r"Its all-tasks IR costs ([\d.]+)x the one-task IR's time on SD1\.5 \(([\d.]+)x on\s+shapes-base",
        lambda: [
            summary(f"{m}, 1 thread(s): OpenVINO fp32, all-tasks graph / OpenVINO fp32, t2i graph, time")
            for m in ("SD1.5 (random weights)", "shapes-base")
        ],
    ),
    Quote(
        "docs/deploy.md",
        r"on SD1\.5 \(random weights\) OpenVINO fp32 ([\d.]+)x \(goal 0\.6: not met\), int8 ([\d.]+)x \(goal 0\.4:\s+"
        r"not met\), int8-static ([\d.]+)x \(met\), bf16 ([\d.]+)x; ONNX fp32 ([\d.]+)x in the same run",
        lambda: [
            summary(f"SD1.5 (random weights), 1 thread(s): {m}, all-tasks graph / PyTorch eager fp32, time")
            for m in ("OpenVINO fp32", "OpenVINO int8", "OpenVINO int8-static", "OpenVINO bf16", "ONNX fp32")
        ],
    ),
    # docs/deploy.md
    Quote(
        "docs/deploy.md",
        r"took ([\d.]+)x PyTorch eager's time in the fp32 ONNX graph on shapes-base, ([\d.]+)x in int8 and "
        r"([\d.]+)x in int8-static; at SD1\.5 size \(random weights\) ([\d.]+)x, ([\d.]+)x and ([\d.]+)x",
        lambda: [
            summary(f"{model}: {variant} / PyTorch eager fp32, time")
            for model in ("shapes-base", "SD1.5 (random weights)")
            for variant in ("ONNX fp32, t2i graph", "ONNX int8, all-tasks graph", "ONNX int8-static, all-tasks graph")
        ],
    ),
    Quote(
        "docs/deploy.md",
        r"whole-image PSNR for inpaint \(([\d.]+) dB\), so they differ from the model card's \(256 examples, "
        r"inpaint scored by \"PSNR inside the hole\": ([\d.]+) dB\)",
        lambda: [bench_cell("12.", 0, "inpaint", "PSNR PyTorch"), card_score("inpaint", "psnr")],
    ),
    Quote(
        "docs/deploy.md",
        r"beside the ([\d.]+) GFLOPs of an SD1\.5 call at 512 px \(BENCHMARKS\.md §3\)",
        lambda: [bench_cell("3.", 1, "SD1.5", "base GFLOPs", {"latent x batch": "64x64 x 1"})],
    ),
    # --help texts
    Quote(
        "mtu --help",
        r"a training step then took ([\d.]+)x its time alone, against ([\d.]+)x with every core, BENCHMARKS\.md "
        r"section 10",
        lambda: [
            bench_cell("10.", 0, "default, beside one busy process", "vs alone"),
            bench_cell("10.", 0, "--threads 2 (torch's default), beside one busy process", "vs alone"),
        ],
    ),
    Quote(
        "mtu quickstart --help",
        r"the whole quickstart took ([\d.]+) minutes on 2 idle CPU cores, README",
        lambda: [quickstart_minutes()],
    ),
    # configs
    Quote(
        "configs/shapes.yaml",
        r"([\d.]+) s on one thread, 5 tasks \(section 7\); ([\d.]+) s on 2 idle cores, 4 tasks \(section 10\)",
        lambda: [bench_cell("7.", 0, "5", "uncached s/step"), bench_cell("10.", 0, "default, alone", "s/step")],
    ),
]


def test_readme_box_is_generated_from_the_records():
    assert figures.readme_box() == figures.what_works_box(), (
        "README.md's 'what works today' box differs from the shapes-mtu model card / RESULTS.md: "
        "run `python -m tests.docs.figures` to regenerate it"
    )


CHECKED_CARD = """## Test scores

## Checked on examples the project uses nowhere else

| check | measured | bar | met |
|---|---|---|---|
| routing: layers routing by task | 5 | >= 7 (of 13) | **no** |
| t2i: all-correct | 0.970 | >= 0.964 (base - 0.02) | yes |
"""


def test_box_names_each_shipped_check_not_met():
    rows = figures.card_check(CHECKED_CARD)
    assert [row["met"] for row in rows] == [False, True]
    (line, blank) = figures._check_lines(rows)
    assert "meets 1 of the 2 bars" in line and blank == ""
    assert "routing: layers routing by task (5; bar >= 7 (of 13))" in line and "t2i" not in line.split("not met")[1]
    assert figures.card_check("## Test scores\n") == [] and figures._check_lines([]) == []


def help_text(command: str | None) -> str:
    """`mtu --help` (command None) or `mtu <command> --help`, as printed (whitespace flattened)."""
    parser = build_parser()
    if command is not None:
        parser = _subparsers(parser)[command]
    return " ".join(parser.format_help().split())


def page_text(page: str) -> str:
    """A page's flattened text; "mtu --help" and "mtu <command> --help" are the command line's help."""
    if page.startswith("mtu ") and page.endswith(" --help"):
        words = page.split()
        return help_text(words[1] if len(words) == 3 else None)
    return flat(ROOT / page)


@pytest.mark.parametrize("quote", QUOTES, ids=lambda quote: quote.id)
def test_quoted_figure_equals_its_record(quote: Quote):
    text = page_text(quote.page)
    matches = list(re.finditer(quote.pattern, text))
    assert matches, f"{quote.page}: the phrase {quote.pattern!r} is gone; update the page's figure or this check"
    expected = quote.values()
    for match in matches:
        quoted = match.groups()
        assert len(quoted) == len(expected)
        wrong = [(q, e) for q, e in zip(quoted, expected) if not agrees(q, e)]
        assert not wrong, f"{quote.page}: quotes {wrong} (quoted, record) in {match.group(0)!r}"


@pytest.mark.parametrize("page", [*PAGES, *CONFIGS], ids=relative)
def test_benchmark_section_references_exist(page: Path):
    """ "BENCHMARKS.md §N" names a section BENCHMARKS.md has (its numbers move when sections are added)."""
    numbered = {int(m) for m in re.findall(r"^## (\d+)\. ", figures.BENCHMARKS.read_text(), flags=re.M)}
    text = flat(page)
    cited = [int(n) for n in re.findall(r"BENCHMARKS\.md,? (?:§|section )(\d+)", text)]
    cited += [int(n) for n in re.findall(r"BENCHMARKS\.md[^.]*?\(section (\d+)\)", text)]
    assert not set(cited) - numbered, f"{relative(page)} cites BENCHMARKS.md sections {sorted(set(cited) - numbered)}"


# ---------------------------------------------------------------------------------------------- the quickstart's time

QUICKSTART_SOURCE = (
    r"Time on this 2-core machine with nothing else running: ([\d.]+) minutes by the report's own clock, "
    r"(\d+) min (\d+) s wall-clock \(`mtu quickstart`, 300 steps, in a clean clone; measured for issue 29, "
    r"(\d{4}-\d\d)\)"
)


def minutes_quoted(text: str) -> list[float]:
    """Every duration in minutes a text quotes ("3 min 48 s", "3.7 minutes", "~5 min")."""
    found = [int(m) + int(s) / 60 for m, s in re.findall(r"(\d+) min (\d+) s\b", text)]
    text = re.sub(r"(\d+) min (\d+) s\b", "", text)
    found += [float(m) for m in re.findall(r"(\d+(?:\.\d+)?)\s*(?:minutes|min)\b", text)]
    return found


def chunks(text: str) -> list[str]:
    """A page as sentences and table rows (whitespace flattened), the units a quote is read in."""
    out = []
    for paragraph in re.split(r"\n\s*\n", text):
        lines = paragraph.splitlines()
        if lines and all(line.startswith("|") for line in lines):
            out += lines
        else:
            out += re.split(r"(?<=[.;])\s+(?=[A-Z(`*])", " ".join(paragraph.split()))
    return out


def quickstart_minutes() -> float:
    """The quickstart's time by its report's clock, as README.md's one sourced statement gives it."""
    return float(re.search(QUICKSTART_SOURCE, flat(figures.README)).group(1))


def test_quickstart_time_has_one_source_and_every_quote_agrees():
    source = re.search(QUICKSTART_SOURCE, flat(figures.README))
    assert source, "README.md no longer states the quickstart's measured time with its source and date"
    minutes, wall = float(source.group(1)), int(source.group(2)) + int(source.group(3)) / 60
    assert abs(wall - minutes) < 0.5, "the report's clock and the wall-clock of one run cannot differ by minutes"
    texts = {relative(page): chunks(page.read_text()) for page in PAGES}
    texts["mtu quickstart --help"] = [help_text("quickstart")]
    for where, units in texts.items():
        for unit in units:
            if "quickstart" not in unit:
                continue
            for value in minutes_quoted(unit):
                assert abs(value - minutes) <= 0.5 or abs(value - wall) <= 0.5, (
                    f"{where} quotes the quickstart at {value:.1f} min; README.md's measurement says "
                    f"{minutes} min ({source.group(0)!r}): {unit!r}"
                )


# ---------------------------------------------------------------------------------------------- commands and flags


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def code_snippets(text: str) -> list[str]:
    """Fenced code lines (backslash continuations joined, comments dropped) and inline code spans."""
    snippets = []
    fence = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
    for block in fence.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            snippets.append(re.split(r"\s#\s|\s#$", line)[0])
    rest = fence.sub("", text)
    snippets += [" ".join(span.split()) for span in re.findall(r"(?<!`)`([^`\n]+(?:\n[^`\n]+)*)`(?!`)", rest)]
    return snippets


COMMAND_END = {";", "&&", "||", "|", "#", "->", "then", "or", "and"}


def mtu_invocations(snippet: str) -> list[tuple[str | None, list[str], list[str]]]:
    """(command, its flags, global flags) for each `mtu ...` in a snippet; command None when none is named."""
    tokens = snippet.split()
    found = []
    for i, token in enumerate(tokens):
        if token != "mtu" and not token.endswith("/mtu"):
            continue
        rest = tokens[i + 1 :]
        global_flags, command, flags = [], None, []
        j = 0
        while j < len(rest) and rest[j].startswith("-"):
            global_flags.append(rest[j].split("=")[0])
            j += 2 if rest[j] == "--threads" else 1
        if j < len(rest):
            command = rest[j]
            for word in rest[j + 1 :]:
                if word in COMMAND_END or word == "mtu" or word.endswith("/mtu"):
                    break
                flag = word.strip("[](),`'\"")
                if flag.startswith("--"):
                    flags.append(flag.split("=")[0].rstrip(":.,"))
        found.append((command, flags, global_flags))
    return found


def quoted_commands() -> list[tuple[str, str, list[str], list[str]]]:
    out = []
    for page in PAGES:
        for snippet in code_snippets(page.read_text()):
            for command, flags, global_flags in mtu_invocations(snippet):
                out.append((relative(page), snippet, command, flags, global_flags))
    return out


def test_pages_quote_commands():
    assert len(quoted_commands()) > 50  # the parsing still finds the pages' commands


def test_every_quoted_command_and_flag_exists():
    parser = build_parser()
    commands = _subparsers(parser)
    global_options = set(parser._option_string_actions)
    problems = []
    for page, snippet, command, flags, global_flags in quoted_commands():
        problems += [
            f"{page}: `{snippet}`: mtu has no option {flag}" for flag in global_flags if flag not in global_options
        ]
        if command is None or command.startswith(("<", "...", "$")) or command.strip(".") == "":
            continue  # `mtu`, `mtu <command>`, `mtu ...`: no command named
        name = command.rstrip(":`.,)'")
        if name not in commands:
            problems.append(f"{page}: `{snippet}`: mtu has no command {name!r}")
            continue
        options = set(commands[name]._option_string_actions)
        problems += [f"{page}: `{snippet}`: `mtu {name}` has no option {flag}" for flag in flags if flag not in options]
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------- links and paths

# Paths the pages name that a documented command writes, so a checkout need not hold them.
WRITTEN_BY_COMMANDS = {"reproduction/router_pilot.json"}
REPOSITORY_DIRS = ("src/", "tests/", "docs/", "benchmarks/", "configs/", "reproduction/", "RESULTS_figures/")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, seen = set(), {}
    fenced = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"#{1,6} (.+)", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            found.add(base if count == 0 else f"{base}-{count}")
            seen[base] = count + 1
    return found


def prose(text: str) -> str:
    return re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)


@pytest.mark.parametrize("page", PAGES, ids=relative)
def test_relative_links_resolve(page: Path):
    problems = []
    for target in re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose(page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            problems.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{target}: {relative(resolved)} has no heading with anchor #{anchor}")
    assert not problems, f"{relative(page)}:\n" + "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=relative)
def test_mentioned_files_exist(page: Path):
    """Markdown files named anywhere on a page, and repository paths quoted as code, exist."""
    text = page.read_text()
    problems = []
    for name in set(re.findall(r"(?<![\w/.<-])((?:[\w.+-]+/)*[\w.+-]+\.md)\b", text)):
        if name.startswith(("outputs/", "runs/")) or name in WRITTEN_BY_COMMANDS:
            continue  # written by a run
        if not ((page.parent / name).exists() or (ROOT / name).exists()):
            problems.append(f"{name}: no such file (from the page's folder or the repository root)")
    for span in set(re.findall(r"`([^`\s]+)`", text)):
        if not span.startswith(REPOSITORY_DIRS) or re.search(r"[<>*{}$]", span) or span in WRITTEN_BY_COMMANDS:
            continue
        path = span.split(":")[0].rstrip(".,")
        if not (ROOT / path).exists():
            problems.append(f"`{span}`: no such path in the repository")
    assert not problems, f"{relative(page)}:\n" + "\n".join(problems)
