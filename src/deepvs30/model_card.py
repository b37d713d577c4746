"""The model card: the markdown description of a registered model version.

One pure function, :func:`model_card`, turns the facts ``register`` gathers (data version,
training stations, metrics, intended use, lineage) into a short card that the MLflow UI shows
on the version's page. ``promote`` appends its decisions below it.
"""

from __future__ import annotations

import math
from typing import Any

SYNTHETIC_USE = (
    "synthetic-trained: not for real records (trained and scored on the physics-based "
    "synthetic corpus; `deepvs30 real-model` registers the model for real records)."
)
# (metrics.json key, label, format) of the headline station metrics
HEADLINE = (
    ("mape_pct", "station MAPE (%)", "{:.1f}"),
    ("std_ln", "std of ln residuals", "{:.3f}"),
    ("pearson_r_ln", "Pearson r (ln)", "{:.3f}"),
)
BASELINES = (("baseline_median", "training median"), ("baseline_hv", "H/V (f0, A0)"))


def model_card(info: dict[str, Any]) -> str:
    """Markdown card of one model version. ``info`` keys (missing ones read "unknown"):
    ``name``, ``version``, ``model_family``, ``data_version``, ``split``, ``training``
    (``n_stations``, ``n_records``, ``regions``, ``networks``), ``metrics`` (evaluate's
    metrics.json: ``station``, ``baseline_median``, ``baseline_hv``), ``intended_use``,
    ``lineage`` (``git_commit``, ``run_id``, ``params_hash``, ``parent_model_uri``)."""
    title = f"### {info.get('name', 'model')} v{info.get('version', '?')}"
    family = info.get("model_family")
    lines = [f"{title} ({family})" if family else title, ""]
    lines += [f"**Intended use:** {info.get('intended_use') or SYNTHETIC_USE}", ""]
    lines += [*metrics_table(info.get("metrics") or {}, info.get("split")), ""]
    lines += [f"**Data:** {data_line(info)}", ""]
    lines += [f"**Lineage:** {lineage_line(info.get('lineage') or {})}"]
    return "\n".join(lines)


def real_use(arm: str, figures: dict[str, Any], best: bool, sigma_scale: float) -> str:
    """Intended use of the real model: the real benchmark figures its arm was chosen on
    (``figures``: :func:`deepvs30.realmodel.benchmark_figures`)."""
    fmt = "{:.1f}%"
    mape = [_number((figures.get(k) or {}).get("mape_pct"), fmt) for k in ("station",
            "baseline_median", "baseline_hv")]  # fmt: skip
    chosen = "the real benchmark's best arm" if best else "arm set in params.yaml"
    return (
        f"real records. Trained on every labelled real station; {chosen} `{arm}`, out-of-fold "
        f"station MAPE {mape[0]} on the station-disjoint folds (training median {mape[1]}, "
        f"H/V {mape[2]}); predicted sigma scaled by {sigma_scale:.3g} for 68% coverage."
    )


def metrics_table(metrics: dict[str, Any], split: str | None) -> list[str]:
    """The headline station metrics beside the baselines, one row per metric."""
    model = metrics.get("station") or {}
    if not model:
        return ["No evaluation metrics were registered with this version."]
    header = (
        f"| station metrics, {split or 'test'} | model | "
        + " | ".join(b for _, b in BASELINES)
        + " |"
    )
    rows = [header, "|---|---:|" + "---:|" * len(BASELINES)]
    for key, label, fmt in HEADLINE:
        cells = [model.get(key), *((metrics.get(b) or {}).get(key) for b, _ in BASELINES)]
        rows.append(f"| {label} | " + " | ".join(_number(v, fmt) for v in cells) + " |")
    if model.get("n") is not None:
        rows += ["", f"{model['n']} stations scored."]
    return rows


def data_line(info: dict[str, Any]) -> str:
    training = info.get("training") or {}
    n_stations = training.get("n_stations")
    stations = (
        f"{n_stations} training stations ({training.get('n_records', '?')} records)"
        if n_stations is not None
        else "training stations unknown"
    )
    parts = [f"version `{info.get('data_version') or 'unknown'}`", stations]
    if training.get("regions"):
        parts.append("regions " + ", ".join(map(str, training["regions"])))
    if training.get("networks"):
        parts.append("networks " + ", ".join(map(str, training["networks"])))
    if info.get("split"):
        parts.append(f"split `{info['split']}`")
    return "; ".join(parts)


def lineage_line(lineage: dict[str, Any]) -> str:
    parts = [
        f"git commit `{lineage.get('git_commit') or 'unknown'}`",
        f"MLflow run `{lineage.get('run_id') or 'unknown'}`",
        f"params hash `{lineage.get('params_hash') or 'unknown'}`",
    ]
    if lineage.get("parent_model_uri"):
        parts.append(f"fine-tuned from `{lineage['parent_model_uri']}`")
    return "; ".join(parts)


def _number(value: object, fmt: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "–"
    return fmt.format(value)
