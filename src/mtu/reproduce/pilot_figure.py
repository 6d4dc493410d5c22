"""The pilot's learning curves as one figure: a column per task, PSNR above, parser all-correct below."""

from __future__ import annotations

from pathlib import Path


def pilot_figure(record: dict, path: str | Path) -> Path:
    """Curves of every pilot run (one line per setting) with the bar drawn in: baseline + margin, accuracy bar."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tasks = list(dict.fromkeys(run["task"] for run in record["runs"].values()))
    protocol, baselines = record["protocol"], record["baselines"]
    figure = Figure(figsize=(3.2 * max(len(tasks), 1), 5.2), constrained_layout=True)
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, max(len(tasks), 1), squeeze=False)
    for column, task in enumerate(tasks):
        top, bottom = axes[0][column], axes[1][column]
        for run in (r for r in record["runs"].values() if r["task"] == task):
            steps = sorted(run["curve"], key=int)
            x = [int(s) for s in steps]
            if task in baselines:
                top.plot(x, [run["curve"][s]["psnr"] for s in steps], marker=".", label=run["setting"])
            bottom.plot(x, [run["curve"][s]["all_correct"] for s in steps], marker=".", label=run["setting"])
        if task in baselines:
            psnr = baselines[task]["psnr"]
            top.axhline(psnr, color="grey", linestyle=":", label="no-learning baseline")
            top.axhline(psnr + protocol["psnr_margin_db"], color="black", linestyle="--", label="bar")
        else:
            top.text(0.5, 0.5, "no baseline\n(accuracy bar only)", ha="center", va="center", transform=top.transAxes)
        bottom.axhline(protocol["all_correct_bar"], color="black", linestyle="--")
        top.set_title(task)
        top.set_ylabel("PSNR (dB), validation")
        bottom.set_ylabel("parser all-correct, validation")
        bottom.set_xlabel("optimizer steps (single-task)")
        bottom.set_ylim(0, 1)
    axes[0][0].legend(fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path
