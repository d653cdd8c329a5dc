"""Quality against cost, over a DataFrame of the run log with score columns (``score_ssim``, ``score_psnr``...).

The question a sweep answers: what is the cheapest setting that gives the same picture as the expensive one? Each
image is compared with its *reference*: the image of the same prompt, negative prompt, seed and size at the sweep's
most expensive setting (most steps, then highest CFGScale; ties go to the first cell by its key, so the choice is
stable). Scores are averaged over seeds and prompts per *setting* (size x scheduler x CFGScale x steps), and then:

- :func:`fewest_steps`: for each scheduler and CFG, the fewest steps whose score reaches a threshold, and its cost;
- :func:`pareto_frontier` / :func:`plot_frontier`: the settings no other setting beats on both score and cost (or
  latency);
- :func:`recommend`: one line, e.g. "UniPC, CFG 5, 22 steps gives 0.97 SSIM of the 50-step image at 44% of its cost".

Every function is pure (a DataFrame in, a DataFrame, Figure or sentence out); computing and storing the scores is
:mod:`kandinsky_nb.analysis.scoring`. Plots are matplotlib Figures built without pyplot. Demo-weight images are noise,
so their scores measure noise: every sentence and figure made from them says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..quality import against, metric_label
from ..runlog import METRIC_COLUMN_PREFIX, metric_column
from .cost import list_price_for

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = [
    "DEFAULT_THRESHOLDS",
    "DEMO_NOTE",
    "REFERENCE_GROUP",
    "SETTING",
    "Recommendation",
    "describe_setting",
    "fewest_steps",
    "pareto_frontier",
    "planned_reference",
    "plot_convergence",
    "plot_frontier",
    "recommend",
    "reference_runs",
    "score_caption",
    "setting_scores",
]

# Rows that show the same picture at different settings: a reference is chosen within each such group (and within
# one sweep, so a frame of several sweeps compares each image with its own sweep's reference).
REFERENCE_GROUP: tuple[str, ...] = ("sweep_id", "prompt", "negative_prompt", "seed", "size")
# What a researcher chooses (and pays for); scores are averaged over everything else (seeds, prompts).
SETTING: tuple[str, ...] = ("size", "scheduler", "CFGScale", "steps")
DEMO_NOTE = "demo weights: images are noise, so these scores measure noise"
# "The same picture" for the comparison metrics: SSIM 0.95 is hard to tell apart by eye, PSNR 30 dB a close copy.
DEFAULT_THRESHOLDS: dict[str, float] = {"ssim": 0.95, "psnr": 30.0}
_X_LABELS = {"cost_usd": "USD per image", "latency_s": "seconds per image"}


# -- references -------------------------------------------------------------------------------------------------------
def _images(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows that hold an image (status ``ok`` with an image file)."""
    return frame[(frame["status"] == "ok") & frame["image_sha256"].notna()]


def planned_reference(definition: Mapping[str, Any] | None) -> dict[str, float]:
    """The reference setting a sweep definition plans (its largest ``steps`` and ``CFGScale`` axis values), so a
    sweep still running does not take its most expensive image *so far* as the reference. Empty when not known."""
    axes = (definition or {}).get("axes", {})
    return {name: max(float(v) for v in axes[name]) for name in ("steps", "CFGScale") if axes.get(name)}


def reference_runs(
    frame: pd.DataFrame, *, by: Sequence[str] = REFERENCE_GROUP, planned: Mapping[str, float] | None = None
) -> pd.Series:
    """Each image row's reference row id (index: row id; ``<NA>`` while the reference is not logged yet).

    The reference of a row is the row of its group (``by``: same sweep, prompt, negative prompt, seed and size) with
    the most steps, then the highest CFGScale, then the first cell key. ``planned`` (see :func:`planned_reference`)
    names the setting the reference must have: a group whose planned reference has not run yet has none."""
    import pandas as pd

    rows = _images(frame)
    if rows.empty:
        return pd.Series(dtype="Int64", name="reference_id")
    missing = [column for column in by if column not in rows.columns]
    if missing:
        raise ConfigurationError(
            f"by={list(by)!r}: the frame has no column {missing[0]!r}; group by run-log columns such as "
            f"{', '.join(REFERENCE_GROUP)}"
        )
    order = {"steps": False, "CFGScale": False, "sweep_cell": True, "id": True}  # the most expensive first
    order = {column: ascending for column, ascending in order.items() if column in rows.columns}
    ordered = rows.sort_values(list(order), ascending=list(order.values()), na_position="last")
    first = ordered.groupby(list(by), dropna=False, sort=False)["id"].transform("first")
    reference = pd.Series(first.to_numpy(), index=ordered["id"].to_numpy(), name="reference_id").astype("Int64")
    if planned:
        setting = rows.set_index("id")
        fits = pd.Series(True, index=setting.index)
        for column, value in planned.items():
            fits &= (setting[column].astype(float) - value).abs() < 1e-9
        reference = reference.where(fits.reindex(reference.astype("int64").to_numpy()).to_numpy(), pd.NA)
    reference.index.name = "id"
    return reference.sort_index()


# -- per setting ------------------------------------------------------------------------------------------------------
def _score(frame: pd.DataFrame, metric: str) -> pd.Series:
    column = metric_column(metric)
    if column not in frame.columns:
        scored = sorted(
            c.removeprefix(METRIC_COLUMN_PREFIX) for c in frame.columns if c.startswith(METRIC_COLUMN_PREFIX)
        )
        raise ConfigurationError(
            f"metric={metric!r}: the frame has no {column!r} column (scored: {', '.join(scored) or 'nothing yet'}); "
            "score the sweep first (kandinsky_nb.analysis.scoring.score_sweep) or pick a scored metric"
        )
    return frame[column].astype(float)


def _per_image(rows: pd.DataFrame) -> pd.DataFrame:
    """Cost and latency per image: the logged cost (the list price where none was logged) and the request's latency
    shared by its images."""
    rows = rows.copy()
    listed = list_price_for(rows) if len(rows) else rows["cost_usd"]
    rows["cost_usd"] = rows["cost_usd"].astype(float).fillna(listed.astype(float))
    rows["latency_s"] = rows["latency_s"].astype(float) / rows["number_results"].clip(lower=1)
    return rows


def setting_scores(frame: pd.DataFrame, metric: str = "ssim", *, by: Sequence[str] = SETTING) -> pd.DataFrame:
    """One row per setting (``by``: size x scheduler x CFGScale x steps) over its scored images: ``score`` (mean),
    ``score_min``, ``images``, ``cost_usd`` and ``latency_s`` (means per image), ``cost_share`` and
    ``latency_share`` (against the same images' references), and ``reference`` (True for the reference setting)."""
    import pandas as pd

    images = _per_image(_images(frame))
    rows = images.assign(score=_score(images, metric))
    rows = rows[rows["score"].notna()].copy()
    references = frame["reference_id"] if "reference_id" in frame.columns else None
    if references is not None:
        reference_of = pd.Series(references.to_numpy(), index=frame["id"].to_numpy())
    else:
        reference_of = reference_runs(frame)
    rows["reference_id"] = reference_of.reindex(rows["id"].to_numpy()).to_numpy()
    base = images.set_index("id")[["cost_usd", "latency_s"]]  # a reference costs what it cost, scored or not
    known = rows["reference_id"].notna()
    ref_ids = rows.loc[known, "reference_id"].astype("int64")
    for column in ("cost_usd", "latency_s"):
        rows[f"reference_{column}"] = float("nan")
        rows.loc[known, f"reference_{column}"] = base[column].reindex(ref_ids.to_numpy()).to_numpy()
    rows["is_reference"] = known & (rows["reference_id"] == rows["id"])
    keys = [column for column in by if column in rows.columns]
    if rows.empty:
        columns = ["score", "score_min", "images", "cost_usd", "latency_s", "reference", "cost_share", "latency_share"]
        return pd.DataFrame(columns=[*keys, *columns])
    grouped = rows.groupby(keys, dropna=False, sort=True).agg(
        score=("score", "mean"),
        score_min=("score", "min"),
        images=("score", "size"),
        cost_usd=("cost_usd", "mean"),
        latency_s=("latency_s", "mean"),
        reference_cost_usd=("reference_cost_usd", "mean"),
        reference_latency_s=("reference_latency_s", "mean"),
        reference=("is_reference", "all"),
    )
    grouped["cost_share"] = grouped["cost_usd"] / grouped.pop("reference_cost_usd")
    grouped["latency_share"] = grouped["latency_s"] / grouped.pop("reference_latency_s")
    return grouped.reset_index()


def fewest_steps(
    frame: pd.DataFrame,
    metric: str = "ssim",
    threshold: float | None = None,
    *,
    by: Sequence[str] = ("size", "scheduler", "CFGScale"),
) -> pd.DataFrame:
    """For each scheduler and CFG (``by``), the fewest steps whose mean score reaches ``threshold``, with what that
    setting costs per image and as a share of the reference's cost. Where no step count reaches it, ``reached`` is
    False, ``steps`` is ``<NA>`` and ``score`` is the best score seen. ``threshold`` defaults to
    :data:`DEFAULT_THRESHOLDS` of the metric."""
    import pandas as pd

    threshold = _threshold(metric, threshold)
    table = setting_scores(frame, metric, by=[*by, "steps"])
    keys = [column for column in by if column in table.columns]
    records = []
    for key, group in table.groupby(keys, dropna=False, sort=True):
        group = group.sort_values("steps")
        hits = group[group["score"] >= threshold]
        first = hits.iloc[0] if len(hits) else group.loc[group["score"].idxmax()]
        record = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        record.update(
            steps=int(first["steps"]) if len(hits) else pd.NA,
            score=float(first["score"]),
            reached=bool(len(hits)),
            cost_usd=float(first["cost_usd"]) if len(hits) else float("nan"),
            cost_share=float(first["cost_share"]) if len(hits) else float("nan"),
            latency_s=float(first["latency_s"]) if len(hits) else float("nan"),
        )
        records.append(record)
    result = pd.DataFrame.from_records(
        records, columns=[*keys, "steps", "score", "reached", "cost_usd", "cost_share", "latency_s"]
    )
    result["steps"] = result["steps"].astype("Int64")
    return result


def _frontier_mask(x: pd.Series, score: pd.Series) -> list[bool]:
    """True for the points no other point beats: none is at most as expensive and scores higher."""
    order = sorted(range(len(x)), key=lambda i: (x.iloc[i], -score.iloc[i]))
    best = -math.inf
    keep = [False] * len(x)
    for i in order:
        if score.iloc[i] > best:
            keep[i] = True
            best = score.iloc[i]
    return keep


def pareto_frontier(
    frame: pd.DataFrame, metric: str = "ssim", *, x: str = "cost_usd", by: Sequence[str] = SETTING
) -> pd.DataFrame:
    """The settings on the Pareto frontier of score against ``x`` (``"cost_usd"`` or ``"latency_s"`` per image),
    cheapest first: each scores higher than every cheaper setting."""
    table = _with_frontier(frame, metric, x, by)
    return table[table["on_frontier"]].drop(columns="on_frontier").reset_index(drop=True)


def _with_frontier(frame: pd.DataFrame, metric: str, x: str, by: Sequence[str]) -> pd.DataFrame:
    if x not in _X_LABELS:
        raise ConfigurationError(f"x={x!r}: the frontier is drawn against 'cost_usd' or 'latency_s'; use one of them")
    table = setting_scores(frame, metric, by=by)
    table = table[table[x].notna()].sort_values([x, "score"], ascending=[True, False]).reset_index(drop=True)
    table["on_frontier"] = _frontier_mask(table[x], table["score"]) if len(table) else []
    return table


# -- in words ---------------------------------------------------------------------------------------------------------
def _number(value: float) -> str:
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if abs(value) < 10:  # scores near 1 (SSIM): three significant digits, so 0.999 does not read as 1.00
        return f"{value:.3g}"
    return f"{value:.1f}" if abs(value) < 1000 else f"{value:,.0f}"


def describe_setting(setting: Mapping[str, Any], *, with_size: bool = False) -> str:
    """``"UniPC, CFG 5, 22 steps"`` (with ``"1024x1024, "`` first when ``with_size``)."""
    parts = []
    if with_size and setting.get("size") is not None:
        parts.append(str(setting["size"]))
    if setting.get("scheduler") is not None:
        parts.append(str(setting["scheduler"]))
    if setting.get("CFGScale") is not None and not _missing(setting["CFGScale"]):
        parts.append(f"CFG {float(setting['CFGScale']):g}")
    if setting.get("steps") is not None and not _missing(setting["steps"]):
        parts.append(f"{int(setting['steps'])} steps")
    return ", ".join(parts)


def _missing(value: Any) -> bool:
    try:
        return bool(value != value)  # NaN and pd.NA-like
    except TypeError:
        return True


@dataclass(frozen=True)
class Recommendation:
    """The cheapest setting whose mean score reaches ``threshold``, against the reference setting."""

    metric: str
    threshold: float
    setting: dict[str, Any]
    score: float
    cost_usd: float
    cost_share: float
    reference: dict[str, Any]
    reached: bool
    demo: bool = False
    with_size: bool = False

    def __str__(self) -> str:
        label = metric_label(self.metric)
        chosen = describe_setting(self.setting, with_size=self.with_size)
        compared = against(self.metric) == "reference"
        steps = self.reference.get("steps")
        image = f"the {int(steps)}-step image" if steps is not None and not _missing(steps) else "the reference image"
        of = f" of {image}" if compared else ""
        cost = "its cost" if compared else f"the cost of {describe_setting(self.reference, with_size=self.with_size)}"
        noise = f" ({DEMO_NOTE})" if self.demo else ""
        if not self.reached:
            return (
                f"no setting reaches {_number(self.threshold)} {label}{of}; the best, {chosen}, gives "
                f"{_number(self.score)} at {self.cost_share:.0%} of {cost}{noise}"
            )
        if self.setting == self.reference:
            return f"no cheaper setting reaches {_number(self.threshold)} {label}{of}: keep {chosen}{noise}"
        return f"{chosen} gives {_number(self.score)} {label}{of} at {self.cost_share:.0%} of {cost}{noise}"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


def _threshold(metric: str, threshold: float | None) -> float:
    if threshold is not None:
        return float(threshold)
    if metric not in DEFAULT_THRESHOLDS:
        raise ConfigurationError(
            f"threshold=None: {metric!r} has no default threshold (only {', '.join(DEFAULT_THRESHOLDS)} do); pass "
            "the score a setting must reach, e.g. threshold=0.5"
        )
    return DEFAULT_THRESHOLDS[metric]


def recommend(frame: pd.DataFrame, metric: str = "ssim", threshold: float | None = None) -> Recommendation:
    """The cheapest setting whose mean score reaches ``threshold`` (default: :data:`DEFAULT_THRESHOLDS` of the
    metric), or, if none does, the best-scoring one; said in one line by ``str()``: "UniPC, CFG 5, 22 steps gives
    0.97 SSIM of the 50-step image at 44% of its cost"."""
    threshold = _threshold(metric, threshold)
    table = setting_scores(frame, metric)
    if table.empty:
        raise ConfigurationError(
            f"metric={metric!r}: no scored images in the frame; run the sweep and score it "
            "(kandinsky_nb.analysis.scoring.score_sweep) before asking for a recommendation"
        )
    reached = table[table["score"] >= threshold].sort_values(["cost_usd", "score"], ascending=[True, False])
    chosen = reached.iloc[0] if len(reached) else table.loc[table["score"].idxmax()]
    keys = [column for column in SETTING if column in table.columns]
    references = table[table["reference"]]
    same_size = references[references["size"] == chosen["size"]] if "size" in table.columns else references
    reference = same_size.iloc[0] if len(same_size) else table.sort_values("cost_usd").iloc[-1]
    demo = bool(frame["demo"].any()) if "demo" in frame.columns else False
    with_size = "size" in table.columns and table["size"].nunique() > 1
    return Recommendation(
        metric=metric,
        threshold=threshold,
        setting={key: _plain(chosen[key]) for key in keys},
        score=float(chosen["score"]),
        cost_usd=float(chosen["cost_usd"]),
        cost_share=float(chosen["cost_share"]),
        reference={key: _plain(reference[key]) for key in keys},
        reached=bool(len(reached)),
        demo=demo,
        with_size=with_size,
    )


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python number it holds (so settings compare and print plainly)."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def score_caption(row: Mapping[str, Any], metrics: Sequence[str] | None = None) -> str:
    """A short line of a run's scores for a grid cell or gallery tile: ``"SSIM 0.934 · 24.1 dB PSNR"``; empty when
    the row has no score yet. ``metrics`` picks and orders them (default: every ``score_*`` field)."""
    keys = [str(key) for key in list(row.keys())]  # a dict or a DataFrame row (iterating a Series gives values)
    prefix = METRIC_COLUMN_PREFIX
    names = metrics if metrics is not None else [key.removeprefix(prefix) for key in keys if key.startswith(prefix)]
    parts = []
    for name in names:
        value = row.get(metric_column(name))
        if value is None or _missing(value):
            continue
        label = metric_label(name)
        parts.append(f"{label} {_number(float(value))}" if label.isupper() else f"{_number(float(value))} {label}")
    return " · ".join(parts)


# -- plots ------------------------------------------------------------------------------------------------------------
def _demo_caption(axes: Any, frame: pd.DataFrame) -> None:
    if "demo" in frame.columns and frame["demo"].any():
        axes.text(0.01, 0.01, DEMO_NOTE, transform=axes.transAxes, fontsize=7, color="firebrick")


def plot_frontier(
    frame: pd.DataFrame, metric: str = "ssim", *, x: str = "cost_usd", threshold: float | None = None
) -> Figure:
    """Every setting's mean score against its cost (or latency) per image, one colour per scheduler, steps written
    beside each point; the Pareto frontier as a line, the reference setting as a star."""
    from ._figures import NotebookFigure as Figure  # shows as an image in a notebook, with or without %matplotlib

    table = _with_frontier(frame, metric, x, SETTING)
    finite = table[table["score"].map(math.isfinite)]
    figure = Figure(figsize=(6.5, 4.2), layout="constrained")
    axes = figure.add_subplot()
    several_cfg = "CFGScale" in finite.columns and finite["CFGScale"].nunique() > 1
    groups = finite.groupby("scheduler", dropna=False) if "scheduler" in finite.columns else [("", finite)]
    for scheduler, group in groups:
        axes.scatter(group[x], group["score"], s=22, alpha=0.8, label=str(scheduler))
        for _, point in group.iterrows():
            text = f"{int(point['steps'])}" + (f" @{float(point['CFGScale']):g}" if several_cfg else "")
            axes.annotate(
                text,
                (point[x], point["score"]),
                fontsize=6,
                xytext=(3, 2),
                textcoords="offset points",
            )
    front = finite[finite["on_frontier"]]
    axes.step(front[x], front["score"], where="post", color="black", linewidth=1, label="Pareto frontier")
    reference = finite[finite["reference"]]
    if len(reference):
        axes.scatter(
            reference[x],
            reference["score"],
            marker="*",
            s=140,
            color="gold",
            edgecolor="black",
            zorder=3,
            label="reference",
        )
    if threshold is not None:
        axes.axhline(threshold, color="grey", linestyle="--", linewidth=0.8, label=f"threshold {_number(threshold)}")
    axes.set_xlabel(_X_LABELS[x])
    axes.set_ylabel(metric_label(metric))
    off_chart = len(table) - len(finite)
    note = f" ({off_chart} identical to the reference: +∞, not drawn)" if off_chart else ""
    points = "steps @ CFG" if several_cfg else "steps"
    axes.set_title(f"{metric_label(metric)} against {_X_LABELS[x]}, each point a setting ({points}){note}", fontsize=9)
    if len(finite):
        axes.legend(fontsize=7)
    _demo_caption(axes, frame)
    return figure


def plot_convergence(frame: pd.DataFrame, metric: str = "ssim", *, threshold: float | None = None) -> Figure:
    """Mean score against steps, one line per scheduler and CFG (per size when sizes vary): where each setting
    converges to its reference, and how fast."""
    from ._figures import NotebookFigure as Figure  # shows as an image in a notebook, with or without %matplotlib

    table = setting_scores(frame, metric)
    table = table[table["score"].map(math.isfinite)]
    figure = Figure(figsize=(6.5, 4.2), layout="constrained")
    axes = figure.add_subplot()
    keys = [column for column in ("size", "scheduler", "CFGScale") if column in table.columns]
    with_size = "size" in table.columns and table["size"].nunique() > 1
    for key, group in table.groupby(keys, dropna=False, sort=True):
        setting = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        group = group.sort_values("steps")
        axes.plot(
            group["steps"],
            group["score"],
            marker="o",
            markersize=3,
            label=describe_setting(setting, with_size=with_size),
        )
    if threshold is not None:
        axes.axhline(threshold, color="grey", linestyle="--", linewidth=0.8, label=f"threshold {_number(threshold)}")
    axes.set_xlabel("steps")
    axes.set_ylabel(metric_label(metric))
    axes.set_title(f"{metric_label(metric)} by steps (mean over seeds and prompts)", fontsize=9)
    if len(table):
        axes.legend(fontsize=7)
    _demo_caption(axes, frame)
    return figure
