"""The results page a lab reads: one self-contained HTML file, next to its figures as PNG.

Built only from what the stages wrote (``reports/*.json``, the confusion matrices, the
``explain`` figures, the stop summary), so it never shows a number that is not in the
reports and is rebuilt in seconds without retraining. The balanced scheme is the
headline; the paper's leave-one-cage-out stands beside it with its caveat, then the leaky
K-fold. Every accuracy stands next to its interval over cages, its exact binomial interval,
the chance level, where one was run the permutation p-value, and the p-value for being
below chance, which, when significant, is spelled out as a biased scheme. The paper's
figures are shown beside ours, not mixed with them.
"""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lmt_stereotype.config import Params
from lmt_stereotype.errors import InputError
from lmt_stereotype.evaluation import CAVEATS, SCHEMES, bias_warning
from lmt_stereotype.figures import confusion_panels_figure
from lmt_stereotype.labels import CLASSES

MODELS = {"cnn": "CNN", "knn": "PCA + 1-NN", "svm": "PCA + SVM"}
PAPER_CONFUSION = np.array([[22, 2, 0, 0], [9, 8, 1, 6], [0, 4, 20, 0], [0, 0, 0, 24]])
"""The paper's Table 1 (rows: labels, columns: predictions, AM JM AF JF), leave-one-cage-out."""
PAPER_ACCURACY = {"cnn": (0.771, 0.917, 0.625), "knn": (0.62, None, None), "svm": (0.72, None, None)}
"""The paper's accuracy, female and male accuracy per model (12 cages, 96 recordings of 3 days)."""
ACTIVATION = re.compile(r"activation_k(\d+)\.png")
"""The final model's overview of one branch, as ``explain`` names it: ``activation_k{kernel size}.png``."""
ATTRIBUTION_FIGURES = {
    "integrated_gradients.png": (
        "explain/held_out/integrated_gradients.png",
        "Where the held-out models look: Integrated Gradients per class, each cage scored by the model"
        " that never saw it",
    ),
    "time_importance.png": (
        "explain/held_out/time_importance.png",
        "When they look: attribution per interval on the room's clock, dark phases shaded where they fell",
    ),
}
"""Report figure -> (its source under the reports folder, caption), after the activation maps."""


def activation_caption(kernel: int) -> str:
    return f"Class-averaged activation maps, {kernel}×{kernel} branch"


def explain_figures(reports: Path) -> dict[str, tuple[Path, str]]:
    """The ``explain`` figures the page shows, in order, as report figure -> (its source, caption):
    the final model's activation maps of each branch it has (as many as ``cnn.kernel_sizes``
    had when it was trained), smallest kernel first, then :data:`ATTRIBUTION_FIGURES`. Only
    those ``explain`` wrote: none before it ran."""
    branches = []
    for path in (reports / "explain" / "final").glob("activation_k*.png"):
        if match := ACTIVATION.fullmatch(path.name):
            branches.append((int(match[1]), path))
    figures = {path.name: (path, activation_caption(kernel)) for kernel, path in sorted(branches)}
    for name, (source, caption) in ATTRIBUTION_FIGURES.items():
        if (reports / source).exists():
            figures[name] = (reports / source, caption)
    return figures


@dataclass(frozen=True)
class ReportInputs:
    """What the page shows, read from the stages' outputs."""

    metrics: dict[str, dict[str, dict[str, float]]]  # model -> scheme -> metrics (balanced first)
    confusion: dict[str, np.ndarray]  # model -> balanced-scheme counts, rows labels, columns predictions
    cohort: dict[str, float]
    recordings: pd.DataFrame
    registered: dict | None


def _json(path: Path, stage: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, f"missing; run `lmt-stereotype {stage}` (or `dvc repro`) first") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON ({exc})") from None


def gather(params: Params) -> ReportInputs:
    """Read every input of the page; a missing one is named with the stage that writes it."""
    reports = params.data.reports
    metrics, confusion = {}, {}
    for model in MODELS:
        stage = "train" if model == "cnn" else "baselines"
        per_scheme = _json(reports / f"{model}.json", stage)
        if "balanced" not in per_scheme:
            raise InputError(reports / f"{model}.json", f"has no balanced results; run `lmt-stereotype {stage}` again")
        metrics[model] = {scheme: per_scheme[scheme] for scheme in SCHEMES if scheme in per_scheme}
        confusion[model] = np.array(_json(reports / model / "balanced" / "confusion.json", stage)["counts"])
    recordings_csv = params.data.stops / "recordings.csv"
    if not recordings_csv.exists():
        raise InputError(recordings_csv, "missing; run `lmt-stereotype stops` first")
    final = reports / "registered_model.json"
    return ReportInputs(
        metrics=metrics,
        confusion=confusion,
        cohort=_json(reports / "histograms.json", "histograms"),
        recordings=pd.read_csv(recordings_csv),
        registered=json.loads(final.read_text()) if final.exists() else None,
    )


def _pct(value: float | None) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.1%}"


def _p(value: float | None) -> str:
    return "not run" if value is None or not np.isfinite(value) else f"{value:.3g}"


def results_table(inputs: ReportInputs) -> pd.DataFrame:
    """CNN, 1-NN and SVM side by side, balanced scheme first, with the paper's figures beside them."""
    rows = []
    for model, name in MODELS.items():
        m, schemes = inputs.metrics[model]["balanced"], inputs.metrics[model]
        paper, paper_f, paper_m = PAPER_ACCURACY[model]
        rows.append(
            {
                "model": name,
                "accuracy (balanced)": _pct(m["accuracy"]),
                "95% interval over cages": f"{_pct(m['accuracy_ci_low'])}–{_pct(m['accuracy_ci_high'])}",
                "exact binomial 95%": f"{_pct(m['accuracy_binomial_low'])}–{_pct(m['accuracy_binomial_high'])}",
                "balanced accuracy": _pct(m["balanced_accuracy"]),
                "females": _pct(m["accuracy_female"]),
                "males": _pct(m["accuracy_male"]),
                "permutation p": _p(m.get("permutation_p_value")),
                "below-chance p": _p(m.get("below_chance_p")),
                "chance": _pct(m["chance_level"]),
                "leave-one-cage-out (caveat below)": _pct(schemes.get("loco", {}).get("accuracy")),
                "K-fold (leaky)": _pct(schemes.get("kfold", {}).get("accuracy")),
                "paper (leave-one-cage-out)": _pct(paper)
                + (f" (F {_pct(paper_f)}, M {_pct(paper_m)})" if paper_f else ""),
            }
        )
    return pd.DataFrame(rows)


def warnings(inputs: ReportInputs, confidence: float) -> list[str]:
    """The schemes whose accuracy is significantly below chance, as sentences: biased, not findings."""
    out = []
    for model, name in MODELS.items():
        for scheme, m in inputs.metrics[model].items():
            warning = bias_warning(m, confidence)
            if warning:
                out.append(f"{name}, {SCHEMES[scheme]}: {warning}.")
    return out


def _span(values: pd.Series, unit: str) -> str:
    lo, hi = f"{values.min():.1f}", f"{values.max():.1f}"
    return f"{lo} {unit} each" if lo == hi else f"{lo} to {hi} {unit}"


def cohort_summary(inputs: ReportInputs, params: Params, source: str) -> list[tuple[str, str]]:
    """The cohort in a few lines: what was recorded, how much, how it was binned."""
    c, rec, h = inputs.cohort, inputs.recordings, params.histograms
    hours = rec["duration_s"] / 3600
    classes = ", ".join(f"{k} {int(c.get(f'n_{k}', 0))}" for k in CLASSES)
    return [
        (
            "data",
            "synthetic demo cohort with planted effects (lmt-stereotype simulate)"
            if source == "synthetic"
            else "LMT recordings named in " + str(params.data.manifest),
        ),
        ("cages", f"{int(c['n_cages'])}"),
        (
            "recordings",
            f"{len(rec)} LMT databases of {_span(hours, 'h')}, {int(rec['n_animals'].sum())} animals in all",
        ),
        ("mouse-recordings (samples)", f"{int(c['n_samples'])}: {classes}"),
        (
            "stops",
            f"{int(c['n_stops']):,} (speed ≤ {params.stops.speed_threshold_cm_s:g} cm/s held ≥ "
            f"{params.stops.min_duration_s:g} s), {int(c['n_stops_in_window']):,} inside the stacks' window",
        ),
        (
            "stacks",
            f"T = {h.n_intervals} intervals of {h.interval_s / 60:g} min, {h.grid} × {h.grid} tiles over "
            f"{params.lmt.arena_size_cm:g} × {params.lmt.arena_size_cm:g} cm",
        ),
        (
            "evaluation",
            f"{SCHEMES['balanced']} ({params.evaluation.matchings} matching(s) of the cages, each recording's "
            "predictions averaged), so every training set keeps the cohort's balance of sexes; whole cages held "
            "out; nothing (scaling, PCA, tuning) fitted on a test cage",
        ),
    ]


def _image(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _table_html(rows: list[tuple[str, str]]) -> str:
    return (
        "<table class='kv'>"
        + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
        + "</table>"
    )


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f3f3f3}table.kv th{width:14em}figure{margin:1.5em 0}figcaption{font-size:.9em;color:#444}
img{max-width:100%}.note{font-size:.9em;color:#444}
.warning{background:#fff3cd;padding:.5em;border:1px solid #e0c060}
.row{display:flex;gap:1em}.row figure{flex:1;min-width:0}"""


def render_html(
    inputs: ReportInputs,
    params: Params,
    provenance: dict[str, str],
    figures: dict[str, Path],
    captions: dict[str, str] | None = None,
) -> str:
    """The page: cohort, results table, confusion matrices beside Table 1, explanations.

    ``figures`` holds ``confusion_matrices.png`` and the explanation figures in ``captions``
    (figure -> caption, in order: :func:`explain_figures`); the activation maps of every
    branch stand side by side."""
    table = results_table(inputs)
    chance = inputs.metrics["cnn"]["balanced"]["chance_level"]
    threshold = inputs.metrics["cnn"]["balanced"].get("significance_threshold")
    biased = warnings(inputs, params.evaluation.confidence)
    reg = {k: html.escape(str(v)) for k, v in (inputs.registered or {}).items()}
    registered = (
        f"<p>The final CNN is registered as <b>{reg['name']}</b> version {reg['version']}, alias "
        f"<b>{reg['alias']}</b> ({reg['metric']} {inputs.registered['value']:.3f}: {reg.get('reason', '')}); "
        "predict with "
        f"<code>lmt-stereotype predict RECORDING.sqlite --model {reg['model_uri']}</code>.</p>"
        if reg
        else ""
    )
    sections = [
        "<h1>lmt-stereotype: sex and age from where and when mice stop</h1>"
        f"<p class='note'>data version {html.escape(provenance['data_version'])}</p>",
        "<h2>Cohort</h2>" + _table_html(cohort_summary(inputs, params, provenance["data_source"])),
        "<h2>Models, cage-balanced cross-validation</h2>" + table.to_html(index=False, border=0, escape=True),
        "".join(f"<p class='warning'><b>Biased scheme.</b> {html.escape(w)}</p>" for w in biased),
        f"<p class='note'>Chance is {chance:.0%} (four balanced classes)"
        + (
            f"; with this many recordings an accuracy above {threshold:.1%} is significant at p &lt; 0.05 (binomial)"
            if threshold
            else ""
        )
        + ". The interval over cages is a bootstrap of whole cages; the permutation test permutes labels as "
        "the design allows (sex across cages, age within a cage) and draws balanced folds for each "
        "permutation. The tuned CNN has no permutation p-value: each permutation would be a whole nested "
        "tuning. The below-chance p-value scores the same predictions against design-permuted labels; when it "
        "is small the scheme is biased, and the number says nothing about the mice. Leave-one-cage-out, "
        f"{html.escape(CAVEATS['loco'])}. K-fold shows what cage leakage adds; it is not an estimate of accuracy "
        "on new cages. The paper's column is its 12-cage, 3-day cohort, evaluated leave-one-cage-out.</p>" + registered,
        "<h2>Confusion matrices</h2><figure><img src='" + _image(figures["confusion_matrices.png"]) + "' alt='"
        "confusion matrices'><figcaption>Rows: labels; columns: predictions; cells shaded by the share of "
        "their row. Left: the paper's Table 1.</figcaption></figure>",
        "<h2>What the network looks at</h2>",
    ]
    shown = [(name, caption) for name, caption in (captions or {}).items() if name in figures]
    maps = [(name, caption) for name, caption in shown if ACTIVATION.fullmatch(name)]
    for row in [maps, *([f] for f in shown if f not in maps)]:  # every branch's maps side by side
        sections.append("<div class='row'>")
        for name, caption in row:
            sections.append(
                f"<figure><img src='{_image(figures[name])}' alt='{html.escape(caption)}'>"
                f"<figcaption>{html.escape(caption)}.</figcaption></figure>"
            )
        sections.append("</div>")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>lmt-stereotype results</title>"
        f"<style>{STYLE}</style></head><body>" + "\n".join(sections) + "</body></html>\n"
    )


def write_report(params: Params, folder: Path, provenance: dict[str, str]) -> Path:
    """Write ``folder/index.html`` (self-contained) and its figures as PNG; returns the page's path.

    ``provenance`` names the data version and source ("synthetic" or "LMT"). The explain
    figures are optional: a page built before ``explain`` ran shows none.
    """
    inputs = gather(params)
    figures = {"confusion_matrices.png": folder / "confusion_matrices.png"}
    panels = {"Paper, Table 1": PAPER_CONFUSION} | {f"{MODELS[m]} (ours)": inputs.confusion[m] for m in MODELS}
    confusion_panels_figure(panels, figures["confusion_matrices.png"])
    shown = explain_figures(params.data.reports)
    for name, (source, _) in shown.items():
        shutil.copyfile(source, folder / name)
        figures[name] = folder / name
    results_table(inputs).to_csv(folder / "results.csv", index=False)
    page = folder / "index.html"
    captions = {name: caption for name, (_, caption) in shown.items()}
    page.write_text(render_html(inputs, params, provenance, figures, captions))
    return page
