"""Learning-curve figures (PNG renders offline; DVC's HTML plots need a CDN)."""

from __future__ import annotations

from matplotlib.figure import Figure


def learning_curves(histories: dict[str, list[dict]], x: str, panels: list[str], title: str):
    """One panel per metric in `panels`, one line per named history; returns the figure."""
    fig = Figure(figsize=(4 * len(panels), 3.2))  # no pyplot: no global figure registry, faster import
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, key in zip(axes[0], panels):
        for name, rows in histories.items():
            ax.plot([r[x] for r in rows], [r[key] for r in rows], marker=".", label=name)
        ax.set_title(key.replace("_", " "))
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig
