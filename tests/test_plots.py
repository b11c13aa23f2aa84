"""Every report figure rendered from a small synthetic store: labels, colours, ticks that do not
collide, the baselines drawn alike."""

from __future__ import annotations

import itertools

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from wmbench.report import stats
from wmbench.report.diagnostics import plot_horizon
from wmbench.report.plots import (
    BASELINE_STYLES,
    colours,
    plot_aggregates,
    plot_curves,
    plot_profiles,
    profile_taus,
)
from wmbench.report.store import COLUMNS

OBJECTIVES = ["reconstruction", "contrastive", "tpc"]
TASKS = ["dmc:cartpole-swingup", "dmc:walker-walk"]


def _table() -> pd.DataFrame:
    """Evaluations every 20,000 env frames of 3 seeds per objective, baselines once at 0."""
    rng = np.random.default_rng(0)
    rows = []
    for objective, task, seed in itertools.product(OBJECTIVES, TASKS, range(3)):
        for frames in range(0, 100_001, 20_000):
            value = 130 + 2e-3 * frames * (1 + OBJECTIVES.index(objective)) + rng.normal(0, 10)
            rows.append(("s", objective, task, seed, frames, "eval/return", value, 1.0))
    for policy, task, seed in itertools.product(("zero", "random"), TASKS, range(3)):
        rows.append(("s", policy, task, seed, 0, "eval/return", 100.0 * (policy == "random"), 1.0))
    return pd.DataFrame(rows, columns=COLUMNS)


def _ticks_collide(fig) -> list[str]:
    """Pairs of tick labels (within an axis or across panels) that overlap on the canvas."""
    canvas = FigureCanvasAgg(fig)  # a closed figure keeps its artists, not its canvas
    canvas.draw()
    renderer = canvas.get_renderer()
    collisions = []
    for axis in ("xaxis", "yaxis"):
        shown = []
        for ax in fig.axes:
            low, high = sorted(getattr(ax, axis).get_view_interval())
            ticks = getattr(ax, axis).get_major_ticks()
            locs = getattr(ax, axis).get_majorticklocs()
            shown += [
                tick.label1
                for tick, loc in zip(ticks, locs, strict=False)
                if low <= loc <= high and tick.label1.get_visible() and tick.label1.get_text()
            ]
        boxes = [t.get_window_extent(renderer) for t in shown]
        for (a, box_a), (b, box_b) in itertools.combinations(zip(shown, boxes, strict=True), 2):
            if box_a.overlaps(box_b):
                collisions.append(f"{a.get_text()} / {b.get_text()}")
    return collisions


def _line_colours(fig) -> dict[str, str]:
    """Legend label -> line colour (hex) of every labelled line of the figure."""
    return {
        line.get_label(): mcolors.to_hex(line.get_color())
        for ax in fig.axes
        for line in ax.get_lines()
        if not line.get_label().startswith("_")
    }


@pytest.fixture
def colour():
    return colours(OBJECTIVES)


def test_curves_label_axes_colour_by_objective_and_draw_the_baselines(tmp_path, colour):
    fig = plot_curves(_table(), tmp_path / "curves.png", colour, reps=50)
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert [ax.get_ylabel() for ax in fig.axes] == ["evaluation return"] * 2
    assert [ax.get_xlabel() for ax in fig.axes] == ["env frames"] * 2
    assert _line_colours(fig) == {
        **{o: mcolors.to_hex(colour[o]) for o in OBJECTIVES},
        "zero action": mcolors.to_hex("black"),
        "uniform random": mcolors.to_hex("grey"),
    }
    for ax in fig.axes:
        styles = {line.get_label(): line.get_linestyle() for line in ax.get_lines()}
        assert styles["zero action"] == ":" and styles["uniform random"] == "--"
        random_line = next(line for line in ax.get_lines() if line.get_label() == "uniform random")
        assert random_line.get_ydata()[0] == pytest.approx(100.0)
    assert _ticks_collide(fig) == []


def test_aggregates_and_profiles_share_the_colours_and_their_ticks_do_not_collide(tmp_path, colour):
    # 2 seeds x 1 task with normalised scores in 0.14–0.23, like the smoke suite's, whose figure's
    # tick labels once ran into each other ("0.1500.1750.2000.225")
    matrices = {
        o: np.array([[0.14 + 0.01 * i], [0.23 - 0.01 * i]]) for i, o in enumerate(OBJECTIVES)
    }
    fig = plot_aggregates(stats.aggregates(matrices, reps=50), tmp_path / "a.png", colour)
    assert _ticks_collide(fig) == []
    bar_colours = {
        mcolors.to_hex(patch.get_facecolor()[:3]) for ax in fig.axes for patch in ax.patches
    }
    assert bar_colours == {mcolors.to_hex(colour[o]) for o in OBJECTIVES}
    taus = profile_taus(matrices, 51)
    scores = np.concatenate([m.ravel() for m in matrices.values()])
    assert taus[0] < scores.min() and taus[-1] > scores.max()
    assert taus[-1] - taus[0] < 0.2  # the data's range, not [0, 1]
    fig = plot_profiles(stats.profile(matrices, taus, reps=50), taus, tmp_path / "p.png", colour)
    assert fig.axes[0].get_xlim() == pytest.approx((taus[0], taus[-1]))
    assert {k: v for k, v in _line_colours(fig).items() if k in OBJECTIVES} == {
        o: mcolors.to_hex(colour[o]) for o in OBJECTIVES
    }
    assert _ticks_collide(fig) == []


def test_horizon_plot_has_integer_steps_axis_labels_and_the_report_colours(tmp_path, colour):
    rows = [
        (o, t, s, q, h, 0.1 * h * (1 + OBJECTIVES.index(o)))
        for o, t, s in itertools.product(OBJECTIVES, TASKS, range(2))
        for q in ("reward", "state")
        for h in range(1, 16)
    ]
    frame = pd.DataFrame(
        rows, columns=["objective", "task", "seed", "quantity", "horizon", "value"]
    )
    fig = plot_horizon(frame, tmp_path / "horizon.png", colour)
    assert len(fig.axes) == 4
    for ax in fig.axes:
        assert ax.get_xlabel() == "imagined steps after the context" and ax.get_ylabel()
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert all(float(t).is_integer() for t in ticks)
    assert _line_colours(fig) == {o: mcolors.to_hex(colour[o]) for o in OBJECTIVES}
    assert _ticks_collide(fig) == []


def test_baseline_styles_name_every_baseline():
    assert set(BASELINE_STYLES) == {"zero", "random"}
