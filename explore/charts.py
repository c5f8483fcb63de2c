"""The report's Altair charts, built from polars tables that `explore.report` prepares.

Each builder takes the rows to draw (already sampled) and returns a chart; nothing here reads files
or computes statistics.

Row limit: Altair refuses to embed more than 5 000 rows per dataset (``MaxRowsError``). The limit is
left on; every chart embeds at most `MAX_POINTS` rows (`display_sample`): the Pareto-front designs
always, the rest as a seeded uniform sample whose size the chart's subtitle states. Statistics
(front, hypervolume, Spearman ρ) are computed by `explore.analysis` on every row, never on the sample.

Parquet columns are kept as field names, so a chart's data reads like the trial table; Vega-Lite
reads a dot as nested access, so ``param.<name>`` fields are escaped (`field`).
"""

from __future__ import annotations

from typing import Sequence

import altair as alt
import polars as pl

from explore.analysis import (ROLE_DOMINATED, ROLE_FRONT, ROLE_IDEAL, ROLE_INFEASIBLE, ROLE_PRUNED, ROLE_SCREENED,
                              ROLE_TEST)
from explore.columns import BY_NAME
from explore.columns import title as column_title
from onn.energy import format_energy

HEIGHT = 400  # of the front chart, px
MAX_POINTS = 4000  # rows embedded per dataset, below Altair's 5 000-row guard
SEED = 0  # the display sample is the same on every run

RED, GREY, GOLD, PURPLE = "#c0392b", "#7f8c8d", "#d4a017", "#8e44ad"
# How each role is drawn on the front chart (legend in this order): (fill, stroke, shape, opacity, size).
STYLES: dict[str, tuple[str, str, str, float, int]] = {
    ROLE_FRONT: (RED, "white", "circle", 1.0, 90),
    ROLE_IDEAL: ("white", RED, "circle", 0.8, 50),
    ROLE_TEST: ("#2e86c1", "white", "diamond", 0.85, 45),
    ROLE_DOMINATED: (GREY, GREY, "circle", 0.45, 30),
    ROLE_PRUNED: (GOLD, GOLD, "triangle-up", 0.5, 30),
    ROLE_INFEASIBLE: (PURPLE, PURPLE, "cross", 0.45, 30),
    ROLE_SCREENED: ("white", GOLD, "triangle-down", 0.6, 30),
}
MUTED = (ROLE_DOMINATED, ROLE_PRUNED, ROLE_INFEASIBLE, ROLE_SCREENED)
# The stages of a trained design, in order: (column stem, name); the columns end in _<split>.
STAGES = (("accuracy_ideal", "ideal simulation"), ("accuracy_realised", "realised masks"),
          ("accuracy_fabricated", "fabricated, as made"), ("accuracy_compensated", "fabricated, compensated"))


# Energies are stored in pJ and shown in the SI unit their size calls for (pJ ... J), as
# `onn.energy.format_energy` does in tables and in the terminal.
ENERGY_LABEL_EXPR = ("datum.value >= 1e12 ? format(datum.value / 1e12, '.3~g') + ' J' : "
                     "datum.value >= 1e9 ? format(datum.value / 1e9, '.3~g') + ' mJ' : "
                     "datum.value >= 1e6 ? format(datum.value / 1e6, '.3~g') + ' µJ' : "
                     "datum.value >= 1e3 ? format(datum.value / 1e3, '.3~g') + ' nJ' : "
                     "format(datum.value, '.3~g') + ' pJ'")


def is_energy(column: str) -> bool:
    return column.endswith("_pj")


def label(column: str) -> str:
    """Axis title: what the column is, with its unit (`explore.columns`); energies carry their unit
    on every tick label instead (`axis`)."""
    if is_energy(column):
        known = BY_NAME.get(column)
        return (known.label or known.doc) if known else column
    return column_title(column)


def axis(column: str, **kwargs) -> alt.Axis:
    """An axis for ``column``: energies labelled in auto-scaled SI units."""
    return alt.Axis(labelExpr=ENERGY_LABEL_EXPR, **kwargs) if is_energy(column) else alt.Axis(**kwargs)


def title_of(column: str) -> str:
    """A column in words, for titles."""
    known = BY_NAME.get(column)
    return (known.label or known.doc) if known else column


def field(column: str) -> str:
    """A column name as a Vega-Lite field (dots and brackets escaped, not nested access)."""
    return column.replace("\\", "\\\\").replace(".", "\\.").replace("[", "\\[").replace("]", "\\]")


def display_sample(frame: pl.DataFrame, keep: pl.Expr | None = None, cap: int = MAX_POINTS) -> pl.DataFrame:
    """At most ``cap`` rows: every row where ``keep`` holds, plus a seeded sample of the rest."""
    if len(frame) <= cap:
        return frame
    kept = frame.filter(keep) if keep is not None else frame.clear()
    rest = frame.filter(~keep) if keep is not None else frame
    room = max(cap - len(kept), 0)
    return pl.concat([kept, rest.sample(min(room, len(rest)), seed=SEED)]) if room else kept.head(cap)


def _kind(frame: pl.DataFrame, column: str) -> str:
    return "quantitative" if frame.schema[column].is_numeric() else "nominal"


def tooltips(frame: pl.DataFrame, columns: Sequence[str]) -> list[alt.Tooltip]:
    return [alt.Tooltip(field=field(c), type=_kind(frame, c), title=c,
                        **({"format": ".4~g"} if frame.schema[c].is_float() else {}))
            for c in columns if c in frame.columns]


def _log_scale(values: pl.Series) -> bool:
    """Log axis when the positive values span more than one decade."""
    values = values.drop_nulls()
    return len(values) > 1 and values.min() > 0 and values.max() / values.min() > 10


def front_chart(points: pl.DataFrame, *, x: str, y: str, ideal: str, x_direction: str, step: bool,
                tips: Sequence[str], digital_pj: float | None, title: str, subtitle: Sequence[str]) -> alt.LayerChart:
    """Accuracy (``y_plotted``) vs energy, one point per row, styled by ``role`` (`STYLES`).

    ``y_plotted`` is the objective for trained designs and ``est_accuracy`` for pruned/infeasible
    ones; rows with role `ROLE_IDEAL` repeat each front design at its ideal-simulation accuracy
    (column ``ideal``) and a rule joins it to the trained point. The front is joined as a staircase: the boundary of the
    region it dominates, which holds each point's accuracy until the next point along x when x is
    minimised (step-after) and takes the next point's accuracy when x is maximised (step-before).
    """
    roles = [r for r in STYLES if r in set(points["role"].to_list())]
    styles = dict(STYLES)
    if len(points) > 500:  # dense: smaller, fainter muted points so the cloud keeps its shape
        styles |= {r: (*styles[r][:3], styles[r][3] / 2, styles[r][4] // 2) for r in MUTED}
    # "ordinal" maps role i to range[i]; Vega-Lite's default for size/opacity ("point") interpolates
    scale = {name: alt.Scale(type="ordinal", domain=roles, range=[styles[r][i] for r in roles])
             for i, name in enumerate(("fill", "stroke", "shape", "opacity", "size"))}
    log = _log_scale(pl.concat([points[x].cast(pl.Float64), pl.Series([digital_pj], dtype=pl.Float64)]))
    x_enc = alt.X(field=field(x), type="quantitative", title=label(x), axis=axis(x),
                  scale=alt.Scale(type="log") if log else alt.Scale(zero=False))
    y_enc = alt.Y(field="y_plotted", type="quantitative", title=label(y), axis=axis(y), scale=alt.Scale(zero=False))
    legend = alt.Legend(title=None, orient="bottom", columns=2, labelLimit=0)
    style = dict(fill=alt.Fill("role:N", scale=scale["fill"], legend=legend),
                 stroke=alt.Stroke("role:N", scale=scale["stroke"], legend=legend),
                 shape=alt.Shape("role:N", scale=scale["shape"], legend=legend),
                 opacity=alt.Opacity("role:N", scale=scale["opacity"], legend=legend, sort=roles),
                 # every channel in the legend: one with legend=None drops the merged legend
                 size=alt.Size("role:N", scale=scale["size"], legend=legend, sort=roles),
                 tooltip=tooltips(points, ["role", *tips]))
    base = alt.Chart(points).encode(x=x_enc, y=y_enc)
    is_ = lambda role: alt.datum.role == role  # noqa: E731
    layers = [
        base.transform_filter(is_(ROLE_FRONT) & alt.expr.isValid(alt.datum[ideal])).mark_rule(
            color=RED, opacity=0.4, strokeDash=[2, 2]).encode(y2=alt.Y2(field=field(ideal)))
        if ROLE_IDEAL in roles else None,
        base.transform_filter(is_(ROLE_FRONT)).mark_line(
            interpolate="step-after" if x_direction == "min" else "step-before", color=RED,
            strokeWidth=2).encode(order=alt.Order(field=field(x))) if step else None,
        # muted first, the front last, so the front is never hidden
        base.transform_filter(~is_(ROLE_FRONT)).mark_point(strokeWidth=1.5).encode(**style),
        base.transform_filter(is_(ROLE_FRONT)).mark_point(strokeWidth=1).encode(**style),
    ]
    if digital_pj is not None:
        rule = alt.Chart(pl.DataFrame({x: [digital_pj], "text": [f"all-digital median: {format_energy(digital_pj)}"]}))
        layers += [rule.mark_rule(color="#2c3e50", strokeDash=[6, 4]).encode(x=x_enc),
                   # bottom right of the rule: the corner a front of (max accuracy, min energy) leaves empty
                   rule.mark_text(align="left", dx=4, dy=-4, baseline="bottom", color="#2c3e50", fontSize=11)
                   .encode(x=x_enc, y=alt.value(HEIGHT), text="text:N")]
    return alt.layer(*[layer for layer in layers if layer is not None]).properties(
        width=660, height=HEIGHT, title=alt.Title(title, subtitle=list(subtitle), anchor="start"))


def hypervolume_chart(history: pl.DataFrame, *, compute: str, compute_title: str, units: str, title: str,
                      subtitle: Sequence[str]) -> alt.HConcatChart:
    """Hypervolume vs trials finished and vs cumulative compute (column ``compute``).

    ``history`` holds one row per change of the hypervolume plus the last trial (a step function).
    """
    base = alt.Chart(history).encode(y=alt.Y("hypervolume:Q", title=f"hypervolume ({units})"),
                                     tooltip=tooltips(history, history.columns))

    def panel(column: str, axis_title: str) -> alt.LayerChart:
        encoded = base.encode(x=alt.X(field=column, type="quantitative", title=axis_title))
        return (encoded.mark_line(interpolate="step-after", color="#2c3e50")
                + encoded.mark_point(filled=True, color="#c0392b", size=30)).properties(width=300, height=220)

    return alt.hconcat(panel("trials", "trials finished"), panel(compute, compute_title)).properties(
        title=alt.Title(title, subtitle=list(subtitle), anchor="start"))


def calibration_chart(points: pl.DataFrame, *, trained: str, tips: Sequence[str], title: str,
                      subtitle: Sequence[str]) -> alt.LayerChart:
    """Estimated accuracy (before training) vs the ``trained`` accuracy column, with y = x."""
    lo = min(points["est_accuracy"].min(), points[trained].min())
    hi = max(points["est_accuracy"].max(), points[trained].max())
    diagonal = alt.Chart(pl.DataFrame({"a": [lo, hi]})).mark_line(color="#95a5a6", strokeDash=[4, 4]).encode(
        x="a:Q", y="a:Q")
    dots = alt.Chart(points).mark_circle(size=40, opacity=0.7).encode(
        x=alt.X("est_accuracy:Q", title=label("est_accuracy"), scale=alt.Scale(zero=False)),
        y=alt.Y(field=trained, type="quantitative", title=label(trained), scale=alt.Scale(zero=False)),
        color=alt.Color("role:N", title=None, scale=alt.Scale(domain=[ROLE_FRONT, ROLE_DOMINATED], range=[RED, GREY]),
                        legend=alt.Legend(orient="bottom")),
        tooltip=tooltips(points, ["role", *tips]))
    return (diagonal + dots).properties(width=380, height=300,
                                        title=alt.Title(title, subtitle=list(subtitle), anchor="start"))


def robustness_chart(stages: pl.DataFrame, *, title: str, subtitle: Sequence[str]) -> alt.LayerChart:
    """One row per front design: its accuracy at each stage, connected in stage order.

    ``stages`` is long: ``design`` (label, sorted along the front), ``stage``, ``stage_index``,
    ``accuracy`` and ``std`` (spread over fabrication draws, null for the single-valued stages).
    """
    order = stages.unique("design", maintain_order=True)["design"].to_list()
    present = [name for _, name in STAGES if name in set(stages["stage"].to_list())]
    base = alt.Chart(stages).encode(y=alt.Y("design:N", sort=order, title="front design (by energy)"))
    x = alt.X("accuracy:Q", title="accuracy (0-1)", scale=alt.Scale(zero=False))
    palette = dict(zip((name for _, name in STAGES), ("#1f3a93", "#5dade2", "#e67e22", "#27ae60")))
    colour = alt.Color("stage:N", sort=present, title="stage", legend=alt.Legend(orient="bottom"),
                       scale=alt.Scale(domain=present, range=[palette[name] for name in present]))
    spread = base.transform_filter(alt.expr.isValid(alt.datum.std)).transform_calculate(
        low="datum.accuracy - datum.std", high="datum.accuracy + datum.std").mark_rule(strokeWidth=3, opacity=0.35)
    return alt.layer(
        base.mark_line(color="#bdc3c7").encode(x=x, detail="design:N", order="stage_index:Q"),
        spread.encode(x=alt.X("low:Q"), x2="high:Q", color=colour),
        base.mark_point(filled=True, size=70).encode(x=x, color=colour, tooltip=tooltips(stages, stages.columns)),
    ).properties(width=560, height=max(120, 22 * len(order)),
                 title=alt.Title(title, subtitle=list(subtitle), anchor="start"))


def parameter_chart(rows: pl.DataFrame, *, params: Sequence[str], objectives: Sequence[str],
                    log_params: Sequence[str], ordinal_params: Sequence[str], title: str,
                    subtitle: Sequence[str]) -> alt.ConcatChart:
    """One small scatter per (parameter, objective): a column per parameter, wrapped 4 wide.

    Choices and few-valued integers get an ordinal axis; strings and booleans a nominal one.

    Every panel reads the same dataset (Altair stores it once); ``role`` colours front designs.
    """
    colour = alt.Color("role:N", title=None, legend=alt.Legend(orient="bottom", labelLimit=0),
                       scale=alt.Scale(domain=[ROLE_FRONT, ROLE_DOMINATED, ROLE_PRUNED], range=[RED, GREY, GOLD]))
    columns = []
    for param in params:
        kind = "ordinal" if param in ordinal_params else _kind(rows, param)
        scale = alt.Scale(type="log") if param in log_params else alt.Scale(zero=False)
        x = alt.X(field=field(param), type=kind, title=param.removeprefix("param."),
                  **({"scale": scale} if kind == "quantitative" else {}))
        panels = [alt.Chart(rows).transform_filter(alt.expr.isValid(alt.datum[objective]))
                  .mark_point(filled=True, size=18, opacity=0.55)
                  .encode(x=x, y=alt.Y(field=objective, type="quantitative", title=objective,
                                       scale=alt.Scale(type="log") if _log_scale(rows[objective]) else
                                       alt.Scale(zero=False), axis=axis(objective, tickCount=4)),
                          color=colour, tooltip=tooltips(rows, ["trial_id", param, objective]))
                  .properties(width=150, height=110) for objective in objectives]
        columns.append(alt.vconcat(*panels))
    return alt.concat(*columns, columns=4).properties(title=alt.Title(title, subtitle=list(subtitle),
                                                                      anchor="start"))


def learning_chart(curves: pl.DataFrame, *, title: str, subtitle: Sequence[str]) -> alt.HConcatChart:
    """Per front design (``design``): validation accuracy and mean training loss per epoch."""
    base = alt.Chart(curves).encode(x=alt.X("epoch:Q", title="epoch"),
                                    color=alt.Color("design:N", title="front design", legend=alt.Legend(orient="bottom")),
                                    tooltip=tooltips(curves, curves.columns))
    accuracy = base.mark_line(point=True).encode(y=alt.Y("val:Q", title="validation accuracy (0-1)",
                                                         scale=alt.Scale(zero=False)))
    loss = base.mark_line(point=True).encode(y=alt.Y("loss:Q", title="mean training loss over the epoch",
                                                     scale=alt.Scale(type="log")))
    return alt.hconcat(accuracy.properties(width=300, height=220), loss.properties(width=300, height=220)).properties(
        title=alt.Title(title, subtitle=list(subtitle), anchor="start"))
