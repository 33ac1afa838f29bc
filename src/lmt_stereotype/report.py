"""The results page a lab reads: one self-contained HTML file, next to its figures as PNG.

Built only from what the stages wrote (``reports/*.json``, the confusion matrices, the
``explain`` figures, the stop summary), so it never shows a number that is not in the
reports and is rebuilt in seconds without retraining. The balanced scheme is the
headline; the paper's leave-one-cage-out stands beside it with its caveat, then the leaky
K-fold. Every accuracy stands next to its interval over cages, its exact binomial interval,
the chance level, where one was run the permutation p-value, and the p-value for being
below chance, which, when significant, is spelled out as a biased scheme.

The page follows the target (``target.column``, written beside every confusion matrix):
it names the question, says how the design's cage factors and within-cage factors
(:mod:`~lmt_stereotype.design`) made the folds and the permutations, and shows the
accuracy within each level of the other grouping columns and, for two classes, the ROC
AUC per fold. Only for the paper's own question (its four classes of sex and age) are
the paper's figures (its Table 1, its accuracies) shown beside ours, never mixed with them.
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
from lmt_stereotype.design import cage_factors, cage_strata, permutation_words
from lmt_stereotype.errors import InputError
from lmt_stereotype.evaluation import CAVEATS, SCHEMES, bias_warning
from lmt_stereotype.figures import confusion_panels_figure
from lmt_stereotype.labels import GROUPING_COLUMNS, PAPER_CLASSES, Target

MODELS = {"cnn": "CNN", "knn": "PCA + 1-NN", "svm": "PCA + SVM"}
PAPER_CONFUSION = np.array([[22, 2, 0, 0], [9, 8, 1, 6], [0, 4, 20, 0], [0, 0, 0, 24]])
"""The paper's Table 1 (rows: labels, columns: predictions, AM JM AF JF), leave-one-cage-out."""
PAPER_ACCURACY = {"cnn": (0.771, 0.917, 0.625), "knn": (0.62, None, None), "svm": (0.72, None, None)}
"""The paper's accuracy, female and male accuracy per model (12 cages, 96 recordings of 3 days)."""
LEVEL_NAMES = {"accuracy_female": "females", "accuracy_male": "males"}
"""Accuracy within a level of a grouping column: its column in the results table (else "<column> <level>")."""
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


def _words(names: list[str]) -> str:
    """``"A"``, ``"A and B"``, ``"A, B and C"``."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def question(target: Target) -> str:
    """The question in words: "sex and age (the paper's four classes)", "genotype: WT vs KO"."""
    if target.is_paper:
        return "sex and age (the paper's four classes)"
    return f"{target.column}: {' vs '.join(target.classes)}"


@dataclass(frozen=True)
class Design:
    """How the target's factors lie over the cages (:mod:`~lmt_stereotype.design`), read from the
    balanced scheme's predictions: each recording's label and cage."""

    target: Target
    y: np.ndarray
    cages: np.ndarray

    @property
    def strata(self) -> tuple[dict[str, list[str]], list[str]]:
        return cage_strata(self.target, self.y, self.cages)

    def layout(self) -> str:
        """Each factor, how many cages it is constant within, and what that makes it."""
        levels, between = self.target.factor_levels(self.y), cage_factors(self.target, self.y, self.cages)
        cages = np.unique(self.cages)
        parts = []
        for factor in self.target.factors:
            constant = sum(len(set(levels[factor][self.cages == cage])) == 1 for cage in cages)
            kind = "a cage factor" if factor in between else "a within-cage factor"
            parts.append(f"{factor} constant within {constant} of the {len(cages)} cages ({kind})")
        strata, mixed = self.strata
        groups = "; ".join(f"{stratum}: {', '.join(members)}" for stratum, members in strata.items() if between)
        if mixed:
            groups += ("; " if groups else "") + f"mixed: {', '.join(mixed)}"
        return "; ".join(parts) + (f". Cages by level: {groups}" if groups else "")

    def folds(self, matchings: int) -> str:
        """What each fold of the balanced scheme held out."""
        strata, mixed = self.strata
        if len(strata) >= 2:
            names = _words(list(strata))
            matchings = min(matchings, min(map(len, strata.values())))
            return (
                f"cage-balanced folds ({matchings} matching(s) of the cages, each recording's predictions "
                f"averaged): each fold holds out one cage each of {names}"
                + (", the mixed cages dealt one per fold beside them" if mixed else "")
                + f", so every training set keeps the cohort's balance of {names} cages"
            )
        if cage_factors(self.target, self.y, self.cages):
            reason = f"every cage is {next(iter(strata))}" if strata else "no cage holds one level only"
        else:
            reason = f"{_words(list(self.target.factors))} varies within cages"
        return f"cage-balanced folds, here leave-one-cage-out ({reason}), so every training set holds every class"


@dataclass(frozen=True)
class ReportInputs:
    """What the page shows, read from the stages' outputs."""

    metrics: dict[str, dict[str, dict[str, float]]]  # model -> scheme -> metrics (balanced first)
    confusion: dict[str, np.ndarray]  # model -> balanced-scheme counts, rows labels, columns predictions
    cohort: dict[str, float]
    recordings: pd.DataFrame
    registered: dict | None
    design: Design  # the target, each recording's label and cage

    @property
    def target(self) -> Target:
        return self.design.target


def _json(path: Path, stage: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, f"missing; run `lmt-stereotype {stage}` (or `dvc repro`) first") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON ({exc})") from None


def _design(predictions: Path, target: Target) -> Design:
    """Each recording's label and cage, from a model's balanced-scheme predictions."""
    try:
        table = pd.read_csv(predictions, dtype=str, keep_default_na=False)
        return Design(target, target.indices(table["true"]), table["cage"].to_numpy(dtype=str))
    except FileNotFoundError:
        raise InputError(predictions, "missing; run `lmt-stereotype train` (or `dvc repro`) first") from None
    except (KeyError, ValueError) as exc:
        raise InputError(predictions, f"no labels of {target.column} {list(target.classes)} ({exc})") from None


def _target_words(target: Target) -> str:
    return f"{target.column} {' '.join(target.classes)}".strip()


def gather(params: Params) -> ReportInputs:
    """Read every input of the page; a missing one is named with the stage that writes it, and so is
    one made for another target than the others or than ``target.column``."""
    reports = params.data.reports
    metrics, confusion, targets = {}, {}, {}
    for model in MODELS:
        stage = "train" if model == "cnn" else "baselines"
        per_scheme = _json(reports / f"{model}.json", stage)
        if "balanced" not in per_scheme:
            raise InputError(reports / f"{model}.json", f"has no balanced results; run `lmt-stereotype {stage}` again")
        metrics[model] = {scheme: per_scheme[scheme] for scheme in SCHEMES if scheme in per_scheme}
        path = reports / model / "balanced" / "confusion.json"
        written = _json(path, stage)
        confusion[model] = np.array(written["counts"])
        targets[model] = Target(written.get("target", "class"), tuple(written.get("classes", PAPER_CLASSES)))
        made, asked = targets[model], params.target
        if made != targets["cnn"]:
            whose = f"the CNN's ({_target_words(targets['cnn'])})"
        elif made.column != asked.column or (asked.classes is not None and tuple(asked.classes) != made.classes):
            whose = f"params.yaml's ({_target_words(Target(asked.column, tuple(asked.classes or ())))})"
        else:
            continue
        raise InputError(path, f"is for target {_target_words(made)}, not {whose}; run `lmt-stereotype {stage}` again")
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
        design=_design(reports / "cnn" / "balanced" / "predictions.csv", targets["cnn"]),
    )


def _pct(value: float | None) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.1%}"


def _p(value: float | None) -> str:
    return "not run" if value is None or not np.isfinite(value) else f"{value:.3g}"


def level_accuracies(inputs: ReportInputs) -> dict[str, str]:
    """The accuracies within a level of a grouping column the models report, as metric -> table column:
    females and males (the only ones for the paper's question, as in its Table 1), then
    ``accuracy_<column>_<level>`` as "<column> <level>", columns in the order of
    :data:`~lmt_stereotype.labels.GROUPING_COLUMNS`."""
    if inputs.target.is_paper:
        return dict(LEVEL_NAMES)
    keys = list(dict.fromkeys(k for m in inputs.metrics.values() for k in m["balanced"]))
    out = {key: name for key, name in LEVEL_NAMES.items() if key in keys}
    for column in GROUPING_COLUMNS:
        prefix = f"accuracy_{column}_"
        out |= {key: f"{column} {key.removeprefix(prefix)}" for key in keys if key.startswith(prefix)}
    return out


def _auc(m: dict[str, float]) -> str:
    auc = m.get("roc_auc", np.nan)
    if auc is None or not np.isfinite(auc):
        return "–"
    return f"{auc:.2f} ({m['roc_auc_ci_low']:.2f}–{m['roc_auc_ci_high']:.2f})"


def results_table(inputs: ReportInputs) -> pd.DataFrame:
    """CNN, 1-NN and SVM side by side, balanced scheme first, with the paper's figures beside them
    when the question is the paper's."""
    rows, levels, target = [], level_accuracies(inputs), inputs.target
    for model, name in MODELS.items():
        m, schemes = inputs.metrics[model]["balanced"], inputs.metrics[model]
        row = {
            "model": name,
            "accuracy (balanced)": _pct(m["accuracy"]),
            "95% interval over cages": f"{_pct(m['accuracy_ci_low'])}–{_pct(m['accuracy_ci_high'])}",
            "exact binomial 95%": f"{_pct(m['accuracy_binomial_low'])}–{_pct(m['accuracy_binomial_high'])}",
            "balanced accuracy": _pct(m["balanced_accuracy"]),
            **{column: _pct(m.get(key)) for key, column in levels.items()},
        }
        if len(target.classes) == 2:
            row["ROC AUC per fold (95%)"] = _auc(m)
        row |= {
            "permutation p": _p(m.get("permutation_p_value")),
            "below-chance p": _p(m.get("below_chance_p")),
            "chance": _pct(m["chance_level"]),
            "leave-one-cage-out (caveat below)": _pct(schemes.get("loco", {}).get("accuracy")),
            "K-fold (leaky)": _pct(schemes.get("kfold", {}).get("accuracy")),
        }
        if target.is_paper:
            paper, paper_f, paper_m = PAPER_ACCURACY[model]
            row["paper (leave-one-cage-out)"] = _pct(paper) + (
                f" (F {_pct(paper_f)}, M {_pct(paper_m)})" if paper_f else ""
            )
        rows.append(row)
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
    """The cohort in a few lines: the question, what was recorded, how much, how it was binned, and how the
    design made the folds and the permutations."""
    c, rec, h, target = inputs.cohort, inputs.recordings, params.histograms, inputs.target
    hours = rec["duration_s"] / 3600
    classes = ", ".join(f"{k} {int(c.get(f'n_{k}', 0))}" for k in target.classes)
    if c.get("n_without_target"):
        classes += f" ({int(c['n_without_target'])} more without a {' or '.join(target.factors)}, left out)"
    design = inputs.design
    return [
        ("question", question(target) + (f": {', '.join(target.classes)}" if target.is_paper else "")),
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
            "design",
            f"{design.layout()}. A factor of the target constant within at least half of the cages is a cage "
            "factor: folds hold out cages of each of its levels together and permutations move it between whole "
            "cages; any other factor is shuffled within each cage. Permuted here: "
            f"{permutation_words(target, design.y, design.cages)}",
        ),
        (
            "evaluation",
            f"{design.folds(params.evaluation.matchings)}; whole cages held out; nothing (scaling, PCA, tuning) "
            "fitted on a test cage",
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
    """The page: the question, cohort and design, results table, confusion matrices (beside Table 1 for the
    paper's question), explanations.

    ``figures`` holds ``confusion_matrices.png`` and the explanation figures in ``captions``
    (figure -> caption, in order: :func:`explain_figures`); the activation maps of every
    branch stand side by side."""
    table, target, design = results_table(inputs), inputs.target, inputs.design
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
    strata, _ = design.strata
    if target.is_paper:
        asked, chance_words, loco = "sex and age", "four balanced classes", CAVEATS["loco"]
    else:
        asked = f"{target.column} ({' vs '.join(target.classes)})"
        chance_words = f"always the most frequent of the {len(target.classes)} classes"
        loco = (
            f"the paper's scheme; with a cage factor ({_words(cage_factors(target, design.y, design.cages))}) its "
            "training set holds one cage fewer of the held-out cage's level, which pulls predictions towards the "
            "other levels (stratification bias)"
            if len(strata) >= 2
            else "here the same folds as the balanced scheme, one cage per fold"
        )
    auc = (
        " ROC AUC is computed on each fold's held-out cages and averaged over the folds that hold both classes "
        "(pooling the scores of different fold models biases it), with a bootstrap interval over folds."
        if len(target.classes) == 2
        else ""
    )
    sections = [
        f"<h1>lmt-stereotype: {html.escape(asked)} from where and when mice stop</h1>"
        f"<p class='note'>data version {html.escape(provenance['data_version'])}</p>",
        "<h2>Cohort</h2>" + _table_html(cohort_summary(inputs, params, provenance["data_source"])),
        "<h2>Models, cage-balanced cross-validation</h2>" + table.to_html(index=False, border=0, escape=True),
        "".join(f"<p class='warning'><b>Biased scheme.</b> {html.escape(w)}</p>" for w in biased),
        f"<p class='note'>Chance is {chance:.0%} ({chance_words})"
        + (
            f"; with this many recordings an accuracy above {threshold:.1%} is significant at p &lt; 0.05 (binomial)"
            if threshold
            else ""
        )
        + ". The interval over cages is a bootstrap of whole cages; the permutation test permutes labels as "
        f"the design allows ({html.escape(permutation_words(target, design.y, design.cages))}) and draws "
        "balanced folds for each permutation. The tuned CNN has no permutation p-value: each permutation would "
        "be a whole nested tuning. The below-chance p-value scores the same predictions against design-permuted "
        "labels; when it is small the scheme is biased, and the number says nothing about the mice."
        + html.escape(auc)
        + f" Leave-one-cage-out, {html.escape(loco)}. K-fold shows what cage leakage adds; it is not an estimate "
        "of accuracy on new cages."
        + (" The paper's column is its 12-cage, 3-day cohort, evaluated leave-one-cage-out." if target.is_paper else "")
        + "</p>"
        + registered,
        "<h2>Confusion matrices</h2><figure><img src='" + _image(figures["confusion_matrices.png"]) + "' alt='"
        "confusion matrices'><figcaption>Rows: labels; columns: predictions; cells shaded by the share of "
        "their row." + (" Left: the paper's Table 1." if target.is_paper else "") + "</figcaption></figure>",
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
    target = inputs.target
    paper = {"Paper, Table 1": PAPER_CONFUSION} if target.is_paper else {}
    panels = paper | {f"{MODELS[m]} (ours)": inputs.confusion[m] for m in MODELS}
    confusion_panels_figure(panels, target.classes, figures["confusion_matrices.png"])
    shown = explain_figures(params.data.reports)
    for name, (source, _) in shown.items():
        shutil.copyfile(source, folder / name)
        figures[name] = folder / name
    results_table(inputs).to_csv(folder / "results.csv", index=False)
    page = folder / "index.html"
    captions = {name: caption for name, (_, caption) in shown.items()}
    page.write_text(render_html(inputs, params, provenance, figures, captions))
    return page
