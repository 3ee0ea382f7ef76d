"""Learning-curve figures (PNG renders offline; DVC's HTML plots need a CDN)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(figsize: tuple[float, float]) -> "Figure":
    """A matplotlib figure without pyplot (no global figure registry). matplotlib is imported here,
    not with this module: the stages that draw nothing start about 0.3 s sooner."""
    from matplotlib.figure import Figure
    return Figure(figsize=figsize)


def learning_curves(histories: dict[str, list[dict]], x: str, panels: list[str], title: str,
                    kept: dict[str, float] | None = None,
                    references: dict[str, dict[str, float]] | None = None):
    """One panel per metric in `panels`, one line per named history; returns the figure.

    Where rows also hold `<metric>_low` and `<metric>_high`, the interval is drawn as a band.
    Loss panels (`*loss`) use a log scale, so late epochs stay readable next to the first.
    `kept` marks, per history, the x that was kept (the best epoch) with a dotted line;
    `references` draws labelled horizontal lines per panel (e.g. the bound U).
    """
    fig = new_figure((max(6, 4 * len(panels)), 3.4))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, key in zip(axes[0], panels):
        for name, rows in histories.items():
            xs = [r[x] for r in rows]
            values = [r[key] for r in rows]
            present = [(a, b) for a, b in zip(xs, values) if b is not None]
            line, = ax.plot([a for a, _ in present], [b for _, b in present], marker=".", label=name)
            if rows and all(r.get(f"{key}_low") is not None and r.get(f"{key}_high") is not None for r in rows):
                ax.fill_between(xs, [r[f"{key}_low"] for r in rows], [r[f"{key}_high"] for r in rows],
                                color=line.get_color(), alpha=0.2, linewidth=0)
            if kept and name in kept:
                ax.axvline(kept[name], color=line.get_color(), linestyle=":", linewidth=1,
                           label=f"{name}: kept {x} {kept[name]:g}")
        for label, value in (references or {}).get(key, {}).items():
            ax.axhline(value, color="grey", linestyle="--", linewidth=1, label=f"{label} {value:.4g}")
        if key.endswith("loss"):
            ax.set_yscale("log")
        ax.set_title(key.replace("_", " "), fontsize=10)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
        if ax is axes[0][0] or (references or {}).get(key):
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


MARKERS = {"aligned": "o", "slerp": "s", "weighted": "^", "random": "D", "layer": "v"}


def children_scatter(rows: list[dict], title: str, return_bar: float | None = None):
    """Each ranked child as a point: held-out primary / U against its return (or, without an
    environment, its validation primary), with interval bars; marker = crossover mode, colour = regime,
    each point labelled with its α, and the return bar a child must reach drawn as a dashed line."""
    fig = new_figure((6.4, 4.2))
    ax = fig.subplots()
    has_return = any(r["online_return"] is not None for r in rows)
    y_key = "online_return" if has_return else "val_primary"
    colours = {regime: f"C{i}" for i, regime in enumerate(dict.fromkeys(r["regime"] for r in rows))}
    for row in rows:
        x, y = row["primary_over_bound"], row[y_key]
        xerr = [[x - row["primary_over_bound_low"]], [row["primary_over_bound_high"] - x]]
        yerr = [[y - row[f"{y_key}_low"]], [row[f"{y_key}_high"] - y]]
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt=MARKERS.get(row["mode"], "o"), color=colours[row["regime"]],
                    alpha=0.8, capsize=2)
        label = "" if row.get("alpha") is None else f"α={row['alpha']:g}"  # None: the operator does not read α
        if row["rank"] == 1:
            label = f"{label} recommended".strip()
        if label:
            above = row["rank"] % 2 == 1  # neighbours in rank alternate above and below their point
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 6 if above else -12), fontsize=8)
    handles = [ax.plot([], [], MARKERS.get(mode, "o"), color="grey", label=mode)[0]
               for mode in dict.fromkeys(r["mode"] for r in rows)]
    handles += [ax.plot([], [], "s", color=colour, label=regime)[0] for regime, colour in colours.items()]
    if has_return and return_bar is not None:
        handles.append(ax.axhline(return_bar, color="grey", linestyle="--", linewidth=1,
                                  label=f"return bar {return_bar:g}"))
    ax.legend(handles=handles, fontsize=7, loc="best")
    ax.set_xlabel("held-out primary / U")
    ax.set_ylabel("return over the reported episodes" if has_return else "validation primary")
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
