"""Learning-curve figures (PNG renders offline; DVC's HTML plots need a CDN)."""

from __future__ import annotations

from matplotlib.figure import Figure


def learning_curves(histories: dict[str, list[dict]], x: str, panels: list[str], title: str):
    """One panel per metric in `panels`, one line per named history; returns the figure.

    Where rows also hold `<metric>_low` and `<metric>_high`, the interval is drawn as a band.
    """
    fig = Figure(figsize=(4 * len(panels), 3.2))  # no pyplot: no global figure registry, faster import
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, key in zip(axes[0], panels):
        for name, rows in histories.items():
            xs = [r[x] for r in rows]
            line, = ax.plot(xs, [r[key] for r in rows], marker=".", label=name)
            if rows and all(r.get(f"{key}_low") is not None and r.get(f"{key}_high") is not None for r in rows):
                ax.fill_between(xs, [r[f"{key}_low"] for r in rows], [r[f"{key}_high"] for r in rows],
                                color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_title(key.replace("_", " "))
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig
