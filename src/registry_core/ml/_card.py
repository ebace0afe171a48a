"""Model cards (Mitchell et al., "Model Cards for Model Reporting", FAT* 2019) in markdown.

A card travels inside every :class:`~registry_core.ml._artifact.ModelArtifact` and beside it as
``<task>.card.md``: what the model is for and not for, the data it was trained on (with the
trace's SHA-256), the features, its metrics on held-out time beside the baselines, its limits,
and the command that retrains it. Figures come from the training report only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._features import FEATURE_NAMES

__all__ = ["next_download_card", "render_card"]

_COLUMNS = ("brier", "log_loss", "ece", "auc", "accuracy", "base_rate", "majority_accuracy")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _table(rows: Mapping[str, Mapping[str, Any]], columns: tuple[str, ...]) -> str:
    head = "| model | " + " | ".join(columns) + " |"
    sep = "|---|" + "---|" * len(columns)
    lines = [head, sep]
    for name, q in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(q.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def next_download_card(report: Mapping[str, Any], *, seed: int) -> str:
    """The card of a next-download predictor, from the report of
    :func:`~registry_core.ml._train.train_next_download`."""
    horizon_h = float(report["horizon_s"]) / 3600.0
    shipped = report["shipped"]
    q = report["models"][shipped]
    rows = {f"{k} (shipped)" if k == shipped else k: v for k, v in report["models"].items()}
    rows.update({f"baseline: {k}": v for k, v in report["baselines"].items()})
    ex = report["examples"]
    cover = float(q["interval_coverage"])
    drift = (
        f"The Venn-Abers intervals are valid when later data is exchangeable with the "
        f"calibration slice; on the held-out time they covered {cover * 100:.0f}% of groups: "
        "read them as the calibration slice's uncertainty, not the drift over time."
        if cover < 0.9
        else "The Venn-Abers intervals covered the held-out groups as expected."
    )
    what = (
        "LightGBM GBDT as a TreeEnsemble"
        if shipped == "gbdt"
        else "logistic regression as a one-layer DenseNet"
    )
    return f"""# Model card: {report["task"]}

## Model details
- Kind `next-download`; {shipped} ({what}),
  isotonic calibration with Venn-Abers intervals; horizon {horizon_h:g} h; seed {seed}.
- Chosen over the other candidate by the lower log loss on the calibration slice (not on the
  held-out time, which only measures).
- Made by `registry-core ml train` (registry_core.ml._train); model {int(q["model_bytes"])} bytes.

## Intended use
For a client (or proxy) that holds an older version of a project: the probability that it asks
for a file of a newer version within {horizon_h:g} h. Used to choose which patches a server
precomputes after an upload and what a proxy prefetches. Not for decisions about people, not for
access control, not a security signal.

## Data
- Trace: `{report["trace"]}`, SHA-256 `{report["data_sha256"]}`.
- Examples: {ex["fit"]} for fitting, {ex["calibration"]} for calibration (the latest part of the
  training time), {ex["test"]} held out (every example after the cut at t = {report["cut"]:.0f} s).
  Training and calibration examples' horizons end before the cut.
- Features ({len(FEATURE_NAMES)}): {", ".join(f"`{n}`" for n in FEATURE_NAMES)}
  (registry_core.ml._features: the same code online and offline).

## Metrics on held-out time
Accuracy is at the threshold chosen on the calibration slice ({q["threshold"]:.2f}); read it beside
the base rate and the accuracy of always answering the majority class.

{_table(rows, _COLUMNS)}

Interval: Venn-Abers [low, high]; the observed rate fell inside the mean interval in
{q["interval_coverage"] * 100:.0f}% of 10 equal-count groups of held-out predictions; mean width
{q["interval_width"]:.3f}.

## Limits
- {drift}
- Trained on one trace; a generated trace encodes the generator's assumptions, not your users.
  Retrain on your own access log before relying on it.
- The label is "asks for any newer version"; which file is taken is spread over the newer files
  by a fixed share ({report["latest_share"]:.2f} to the newest release), not learned per client.
- Clients whose held version is unknown to the feature store get no prediction.

## Retrain
`registry-core ml train --trace ACCESS_LOG --seed {seed} --out DIR --tasks {report["task"]}`
"""


def render_card(header: Mapping[str, Any]) -> str:
    """The card of any artifact header (its own card, or a minimal one from its metrics)."""
    card = str(header.get("card") or "")
    if card:
        return card
    metrics = header.get("metrics") or {}
    lines = [f"# Model card: {header.get('name') or header.get('kind')}", "", "## Metrics", ""]
    lines += [f"- {k}: {_fmt(v)}" for k, v in sorted(metrics.items())]
    lines += ["", f"Training data SHA-256: `{header.get('data_sha256', '')}`", ""]
    return "\n".join(lines)
