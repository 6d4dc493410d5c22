"""Protocol v3's sections of RESULTS.md: the router pilot's choice and the learning-speed levers (validation)."""

from __future__ import annotations

from pathlib import Path

from mtu.reproduce.levers import levers_figure


def router_pilot_section(context: dict) -> list[str]:
    """v3: the multi-task pilot's verdicts per candidate and the recipe it chose (docs/reproduction.md)."""
    protocol = context.get("protocol")
    pilot = getattr(protocol, "router_pilot", None)
    if not pilot:
        return []
    lines = ["## Router pilot: choice of the router recipe (validation)", "",
             "| recipe | (a) learned tasks pass | (b) t2i within 2 points of the base | (c) routing healthy |",
             "|---|---|---|---|"]  # fmt: skip
    for name, verdict in pilot.get("verdicts", {}).items():
        if verdict.get("finished"):
            marks = [verdict["a_learned_tasks_pass"], verdict["b_t2i_kept"], verdict["c_routing_healthy"]]
            lines.append(f"| `{name}` | " + " | ".join("yes" if m else "no" for m in marks) + " |")
    choice = pilot.get("choice") or {}
    return lines + ["", f"Chosen: `{choice.get('recipe')}` ({choice.get('reason')}).", ""]


def levers_section(context: dict, figures: Path) -> list[str]:
    """v3: the learning-speed levers on validation (`mtu.reproduce.levers`), every scored point, and their verdict."""
    levers = getattr(context.get("protocol"), "levers", None)
    if not levers:
        return []
    header = "| run | step | PSNR (dB) | all-correct | all-correct per edit kind |"
    lines = ["## Learning edit: the levers (validation)", "", header, "|---|---|---|---|---|"]
    for name, run in levers["runs"].items():
        for step in sorted(run["curve"], key=int):
            point = run["curve"][step]
            kinds = ", ".join(f"{kind} {v['all_correct']:.2f}" for kind, v in point.get("by_kind", {}).items())
            row = f"| `{name}` | {int(step):,} | {point['psnr']:.2f} | {point['all_correct']:.3f} | {kinds or '-'} |"
            lines.append(row)
    baselines = "; ".join(f"{t} {b['psnr']:.2f} dB / {b['all_correct']:.3f}" for t, b in levers["baselines"].items())
    verdict = {True: "adopted: every trained method re-runs with it", False: "not adopted: v3 keeps v2's loss",
               None: "not decided yet"}[levers.get("snr_adopted")]  # fmt: skip
    figure = levers_figure(levers, figures / "levers.png")
    note = f"No-learning baselines (validation): {baselines}. Min-SNR-gamma (docs/reproduction.md's rule): {verdict}."
    return lines + ["", note, "", f"![levers]({figures.name}/{figure.name})", ""]
