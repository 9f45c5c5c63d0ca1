"""The plots of a grid sweep: success rate, success per class, runtime, the cost of a repair against the swept
settings, methods and per-class changes.

Each ``fig_*`` returns ``(figure, note)`` (see :mod:`.common`): a panel, or the whole figure, is drawn only where
the sweep varies what it compares, and the note says in one line what was left out and why. Every figure is a
matplotlib ``Figure`` (no pyplot state); :mod:`.report` writes them as PNGs and embeds them in the HTML report.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import CLASS_NAMES
from .common import FEW_TICKS, empty_note, held_value, left_out, make_figure, mean_line, shared_legend
from .grid import per_class_matrix
from .preserve import fig_preserve
from .study import fig_objectives, fig_preserve_margin

ANNOTATED_RUNS = 16     # the methods plot names each run's edit-set size when it shows this many runs or fewer


def _panels(df: pd.DataFrame, title: str, checks) -> tuple[list[str], str]:
    """The panels worth drawing of ``checks`` [(panel, column, what, flag)]: those whose column takes two values or
    more; and one line on the others ("" when every panel is kept)."""
    held = [(panel, held_value(df, column, what), flag) for panel, column, what, flag in checks]
    gone = [line for line in held if line[1]]
    note = left_out(f"{title} " + " and ".join(p for p, _, _ in gone), [h for _, h, _ in gone],
                    [f for _, _, f in gone]) if gone else ""
    return [panel for panel, value, _ in held if not value], note


def _success_by_size(ax, df: pd.DataFrame) -> None:
    for name, part in df.groupby("repair_set_type"):
        rate = part.groupby("requested_repair_set_size")["success"].mean() * 100
        ax.plot(rate.index, rate.values, marker="o", label=name)
    sizes = sorted(df["requested_repair_set_size"].dropna().unique())
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{s:g}" for s in sizes])
    ax.minorticks_off()
    ax.set(xlabel="requested edit-set size", ylabel="success rate (%)", title="Success rate by size", ylim=(-5, 105))
    ax.legend(fontsize=9)


def _success_by_type(ax, df: pd.DataFrame) -> None:
    rate = df.groupby("repair_set_type")["success"].mean() * 100
    ax.barh(range(len(rate)), rate.values, color="tab:blue")
    ax.set_yticks(range(len(rate)), rate.index)
    ax.invert_yaxis()
    ax.set(xlabel="success rate (%)", title="Success rate by type", xlim=(0, 105))


def fig_success(df: pd.DataFrame):
    panels, note = _panels(df, "Success rate", [
        ("by size", "requested_repair_set_size", "edit-set size", "--repair-set-sizes"),
        ("by type", "repair_set_type", "edit-set type", "--repair-set-types")])
    if not panels:
        return None, note
    fig, axes = make_figure(len(panels))
    for ax, panel in zip(axes, panels):
        (_success_by_size if panel == "by size" else _success_by_type)(ax, df)
    return fig, note


def fig_class_heatmap(df: pd.DataFrame):
    """Success rate per target class x requested size, one panel per class-homogeneous type."""
    part = df[df["target_class"].notna()]
    types = sorted(part["repair_set_type"].unique())
    if not types:
        return None, "Success by class and size left out: no class-homogeneous runs in the sweep"
    classes, sizes = part["target_class"].nunique(), part["requested_repair_set_size"].nunique()
    if classes < 2 and sizes < 2:
        return None, "Success by class and size left out: one class and one size (the summary table holds the rate)"
    fig, axes = make_figure(len(types), width=max(4.6, 2.4 + 0.7 * sizes), height=1.4 + 0.45 * classes)
    for ax, name in zip(axes, types):
        grid = part[part["repair_set_type"] == name].pivot_table(
            index="target_class", columns="requested_repair_set_size", values="success", aggfunc="mean") * 100
        image = ax.imshow(grid.values, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
        ax.set_xticks(range(grid.shape[1]), [str(int(c)) for c in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [f"{int(c)} {CLASS_NAMES[int(c)]}" for c in grid.index])
        for (i, j), value in np.ndenumerate(grid.values):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=9)
        ax.set(xlabel="requested size", title=f"{name}: success (%)")
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="success (%)")
    return fig, ""


def fig_runtime(df: pd.DataFrame, fits: pd.DataFrame):
    solved = df[df["solve_time"].notna() & (df["repair_runtime_seconds"] > 0) & (df["actual_repair_set_size"] > 0)]
    if solved.empty:
        return None, "Runtime vs size left out: no run reached the solver"
    held = held_value(solved, "actual_repair_set_size", "edit-set size")
    if held:
        return None, left_out("Runtime vs size", [held], ["--repair-set-sizes"], "every run that reached the solver")
    fig, (ax,) = make_figure(1, width=6.4, height=4.2)
    for name, part in solved.groupby("repair_set_type"):
        ax.scatter(part["actual_repair_set_size"], part["repair_runtime_seconds"], label=name, alpha=0.8)
    fit = fits[fits["repair_set_type"] == "all"].iloc[0] if len(fits) else None
    if fit is not None and np.isfinite(fit["exponent"]):
        x = np.geomspace(max(solved["actual_repair_set_size"].min(), 1), solved["actual_repair_set_size"].max(), 50)
        ax.plot(x, fit["coefficient"] * x ** fit["exponent"], "k--",
                label=f"fit: time ~ size^{fit['exponent']:.2f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    sizes = np.unique(solved["requested_repair_set_size"].dropna())
    if 0 < len(sizes) <= FEW_TICKS:       # a tick at each requested size, not 6x10^0
        ax.set_xticks(sizes, [f"{s:g}" for s in sizes])
        ax.minorticks_off()
    ax.set(xlabel="edit-set size (actual)", ylabel="repair time (s)", title="Runtime vs size (log-log)")
    ax.legend(fontsize=9)
    return fig, ""


def fig_cost_vs_size(df: pd.DataFrame):
    held = held_value(df, "requested_repair_set_size", "edit-set size")
    if held:
        return None, left_out("Drawdown and generalization vs size", [held], ["--repair-set-sizes"])
    fig, (a, b) = make_figure(2)
    ok = df[df["success"]]
    for ax, column in ((a, "drawdown"), (b, "generalization")):
        mean_line(ax, ok, "requested_repair_set_size", column)
        ax.set(xlabel="requested edit-set size", ylabel=f"{column} (points)", title=f"{column.capitalize()} vs size")
        ax.axhline(0, color="grey", lw=0.8)
    shared_legend(fig, (a, b))
    return fig, ""


def fig_cost_vs_bound_margin(df: pd.DataFrame):
    """Drawdown against the parameter bound (one line per margin) and against the margin (one line per bound)."""
    panels, note = _panels(df, "Drawdown", [("vs parameter bound", "param_bound", "parameter bound", "--param-bounds"),
                                            ("vs margin", "margin", "margin", "--margins")])
    if not panels:
        return None, note
    ok = df[df["success"]].copy()
    ok["margin_label"] = ["margin " + format(v, "g") for v in ok["margin"]]
    ok["bound_label"] = ["bound " + format(v, "g") for v in ok["param_bound"]]
    fig, axes = make_figure(len(panels))
    for ax, panel in zip(axes, panels):
        x, by, label = (("param_bound", "margin_label", "parameter bound") if panel == "vs parameter bound"
                        else ("margin", "bound_label", "margin"))
        mean_line(ax, ok, x, "drawdown", by=by)
        ax.set(xlabel=label, ylabel="drawdown (points)", title=f"Drawdown vs {label}")
        ax.axhline(0, color="grey", lw=0.8)
    return fig, note


def _methods_drawdown(ax, df: pd.DataFrame) -> None:
    """Drawdown against the share of edit images fixed with the margin, one marker per method; when every run
    fixed the same share (one x value), the drawdown of each method side by side instead."""
    got = df[df["drawdown"].notna()].assign(fixed=lambda d: 100.0 * d["fixed_count"] / d["actual_repair_set_size"])
    groups = list(got.groupby("method"))
    if got.empty:
        empty_note(ax, "no run returned a model")
    elif got["fixed"].nunique() < 2:
        ax.boxplot([part["drawdown"].values for _, part in groups])
        ax.set_xticks(range(1, len(groups) + 1), [name for name, _ in groups])
        ax.set(xlabel=f"method (every run fixed {got['fixed'].iloc[0]:g}% of its edit images)",
               ylabel="drawdown (points)", title="Drawdown by method")
    else:
        for (name, part), marker in zip(groups, "os^vD"):
            ax.scatter(part["fixed"], part["drawdown"], marker=marker, alpha=0.8, label=name)
            for run in part.itertuples() if len(got) <= ANNOTATED_RUNS else ():
                ax.annotate(f"n={run.actual_repair_set_size:g}", (run.fixed, run.drawdown), fontsize=8,
                            xytext=(3, 3), textcoords="offset points")
        ax.set(xlabel="edit images fixed with the margin (%)", ylabel="drawdown (points)",
               title="Drawdown vs images fixed, by method")
        ax.legend(fontsize=9)
    ax.axhline(0, color="grey", lw=0.8)


def _methods_time(ax, df: pd.DataFrame) -> None:
    for (name, part), marker in zip(df.groupby("method"), "os^vD"):
        times = part.groupby("requested_repair_set_size")["repair_runtime_seconds"].median().sort_index()
        ax.plot(times.index, times.values, marker=marker, label=name)
    ax.set_yscale("log")
    ax.set(xlabel="requested edit-set size", ylabel="median repair time (s)", title="Time by method")
    ax.legend(fontsize=9)


def fig_methods(df: pd.DataFrame):
    """Side by side per method: drawdown against the share of edit images fixed with the margin (each run with a
    model; efficacy alone hides fine-tuning's images that are right but below the margin), and time against size."""
    held = held_value(df, "method", "method")
    if held:
        return None, left_out("Methods plot", [held], ["--methods"])
    time_panel, note = _panels(df, "Time by method", [("vs size", "requested_repair_set_size", "edit-set size",
                                                        "--repair-set-sizes")])
    fig, axes = make_figure(1 + len(time_panel))
    _methods_drawdown(axes[0], df)
    if time_panel:
        _methods_time(axes[1], df)
    return fig, note


def fig_per_class(matrix: pd.DataFrame):
    if matrix.empty:
        return None, "Per-class change left out: no successful run recorded its per-class accuracy change"
    fig, (ax,) = make_figure(1, width=8, height=1.6 + 0.4 * len(matrix))
    limit = max(float(np.nanmax(np.abs(matrix.values))), 1e-9)
    image = ax.imshow(matrix.values, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES, rotation=30, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(matrix)), matrix.index)
    for (i, j), value in np.ndenumerate(matrix.values):
        ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=8)
    ax.set_title("Mean per-class accuracy change on the drawdown set (points)")
    fig.colorbar(image, ax=ax, label="change (points)")
    return fig, ""


CAPTIONS = {
    "success_rate": "Share of runs whose repair the saved model verified, by size and type.",
    "class_size_heatmap": "Success rate of the class-homogeneous runs per class and size.",
    "runtime_vs_size": "Repair time (encoding + solve) against the actual edit-set size, with the least-squares "
                       "power-law fit.",
    "cost_vs_size": "Drawdown (test accuracy lost outside the edit set) and generalization (accuracy gained on "
                    "held-out images of the same kind), successful runs, mean and standard deviation.",
    "cost_vs_bound_margin": "Drawdown against the parameter bound and the margin, successful runs.",
    "per_class_change": "Which classes lose accuracy.",
    "methods": "Provable repair vs fine-tuning on the same edit sets and editable parameters: drawdown against the "
               "share of edit images fixed with the margin, for every run that returned a model (fine-tuning may "
               "fix fewer than all), and the median repair time.",
    "preserve": "Drawdown and generalization (every run that returned a model) and repair time against the "
                "preserve-set size (0: no preserve set; all: every correctly classified image of the split, with "
                "the number it took), per method (and edit-set type, objective and preserve margin where they "
                "vary); mean and standard deviation.",
    "preserve_margin": "Drawdown and repair time against the preserve margin D (--preserve-margins), runs with a "
                       "preserve set, one line per preserve size; mean and standard deviation.",
    "objectives": "Drawdown and repair time of the APRNN runs per LP objective (--objectives), a bar per preserve "
                  "size; mean and standard deviation over the other settings.",
}


def figures(df: pd.DataFrame, fits: pd.DataFrame) -> dict:
    """name -> (Figure or None, caption, note) for every plot, in report order (None: left out, see the note)."""
    drawn = {"success_rate": fig_success(df), "class_size_heatmap": fig_class_heatmap(df),
             "runtime_vs_size": fig_runtime(df, fits), "cost_vs_size": fig_cost_vs_size(df),
             "cost_vs_bound_margin": fig_cost_vs_bound_margin(df), "per_class_change": fig_per_class(
                 per_class_matrix(df)), "methods": fig_methods(df), "preserve": fig_preserve(df),
             "preserve_margin": fig_preserve_margin(df), "objectives": fig_objectives(df)}
    return {name: (fig, CAPTIONS[name], note) for name, (fig, note) in drawn.items()}
