"""``lmt-stereotype``: one subcommand per pipeline stage.

The same functions run behind this CLI, the MLproject entry points and the
``dvc.yaml`` stages. Bad input exits with code 2 and a one-line message naming the
file (and the row or key) and the problem; an output that cannot be written (disk full)
or a tracking server that cannot be reached exits with code 3 and one line naming it;
``--debug`` shows the traceback instead (``lmt_stereotype.errors`` lists them all).
Ctrl-C or SIGTERM exits with code 130 after unwinding: the stage's MLflow run ends
KILLED, temporary outputs are removed and the previous ones kept, so a re-run completes.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from lmt_stereotype.config import Params, load_params
from lmt_stereotype.errors import InputError, ProblemError

app = typer.Typer(
    help="Tell a laboratory mouse's sex and age from where and when it stops (Live Mouse Tracker).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)
log = logging.getLogger("lmt_stereotype")

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="Parameter file.", show_default=True)]
WorkersOpt = Annotated[
    int,
    typer.Option(
        "--workers", "-w", min=0, help="Recordings (with DB: animals) read at once (0: one per core); same results."
    ),
]
_state = {"debug": False}


def _progress() -> bool:
    """Progress bars only for a person at a terminal, never in CI logs."""
    return sys.stderr.isatty() and not os.environ.get("CI")


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
) -> None:
    _state["debug"] = debug
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # internal up/downloads, not the user's
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO, format="%(levelname)s %(message)s" if debug else "%(message)s"
    )


@app.command()
def simulate(
    params_path: ParamsOpt = Path("params.yaml"),
    out: Annotated[Path | None, typer.Option(help="Raw folder to write [default: data.raw].")] = None,
    force: Annotated[bool, typer.Option(help="Rewrite even if the folder is up to date.")] = False,
) -> None:
    """Write the synthetic cohort (LMT databases + manifest) into the raw folder.

    Skips when the folder already holds the same simulation; refuses to overwrite a
    folder of real recordings (one without simulation.json).
    """
    from lmt_stereotype.simulate import PROFILES, write_simulated_cohort
    from lmt_stereotype.tracking import stage_run

    params = load_params(params_path)
    profile = PROFILES[params.simulate.profile]
    window_s = params.histograms.n_intervals * params.histograms.interval_s
    recording_s = profile.n_intervals * profile.interval_s
    if window_s != recording_s:
        raise InputError(
            params_path,
            f"histograms cover {params.histograms.n_intervals} x {params.histograms.interval_s:g} s but the "
            f"{params.simulate.profile} profile records {recording_s:g} s; n_intervals x interval_s must equal it",
        )
    out = out or params.data.raw
    with stage_run("simulate", params, ("simulate", "histograms", "cage_layout")) as run:
        wrote = write_simulated_cohort(params, out, force=force, progress=_progress())
        run.set_tags({"raw_dir": str(out), "written": str(wrote)})
    log.info("simulate: %s %s", "wrote" if wrote else "up to date, kept", out)


@app.command()
def stops(
    db: Annotated[
        Path | None, typer.Argument(help="One LMT database; omit to process the manifest's cohort.", readable=False)
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output table for DB (.csv or .parquet).")] = None,
    params_path: ParamsOpt = Path("params.yaml"),
    workers: WorkersOpt = 0,
) -> None:
    """Detect every stop of every identified mouse (speed <= threshold held >= min duration).

    With DB: one row per stop to --out (animal_id, rfid, start_frame, end_frame, start_s,
    duration_s, x_cm, y_cm, n_detections). Without: every recording of the manifest into
    the stops folder (the DVC stage).
    """
    from lmt_stereotype.files import write_table
    from lmt_stereotype.parallel import available_cores
    from lmt_stereotype.stops import recording_stops

    params = load_params(params_path)
    if db is not None:
        table, _ = recording_stops(db, params.lmt, params.stops, threads=workers or available_cores())
        if out is None:
            table.to_csv(sys.stdout, index=False)
        else:
            write_table(table, out)
            log.info("stops: %d stops of %d animals -> %s", len(table), table["animal_id"].nunique(), out)
        return
    _stops_stage(params, workers)


def _stops_stage(params: Params, workers: int = 0) -> None:
    from lmt_stereotype.stops import detect_cohort_stops
    from lmt_stereotype.tracking import stage_run

    with stage_run("stops", params, ("lmt", "stops")) as run:
        summary = detect_cohort_stops(
            params.data.manifest, params.data.stops, params.lmt, params.stops, progress=_progress(), workers=workers
        )
        run.log_metrics({"n_recordings": len(summary), "n_stops": int(summary["n_stops"].sum())})
        run.log_artifact(params.data.stops / "recordings.csv")
    log.info("stops: %d stops in %d recordings -> %s", summary["n_stops"].sum(), len(summary), params.data.stops)


@app.command()
def histograms(params_path: ParamsOpt = Path("params.yaml")) -> None:
    """Build the stacks of stop histograms (T intervals x N x N tiles) of every mouse-recording."""
    _histograms_stage(load_params(params_path))


def _histograms_stage(params: Params) -> None:
    from lmt_stereotype.files import write_json
    from lmt_stereotype.histograms import build_cohort_stacks
    from lmt_stereotype.tracking import stage_run

    with stage_run("histograms", params, ("histograms", "lmt")) as run:
        counts = build_cohort_stacks(
            params.data.manifest, params.data.stops, params.data.stacks, params.lmt, params.histograms
        )
        report = params.data.reports / "preprocess.json"
        write_json(counts, report)
        run.log_metrics(counts)
        run.log_artifact(report)
    log.info(
        "histograms: %d stacks of %dx%dx%d (%d stops) -> %s",
        counts["n_samples"],
        params.histograms.n_intervals,
        params.histograms.grid,
        params.histograms.grid,
        counts["n_stops_in_window"],
        params.data.stacks,
    )


@app.command()
def preprocess(params_path: ParamsOpt = Path("params.yaml"), workers: WorkersOpt = 0) -> None:
    """Stops then histograms, as one MLflow run with a nested run per stage."""
    from lmt_stereotype.tracking import stage_run

    params = load_params(params_path)
    with stage_run("preprocess", params):
        _stops_stage(params, workers)
        _histograms_stage(params)


@app.command()
def train(params_path: ParamsOpt = Path("params.yaml")) -> None:
    """Cross-validate the paper's CNN per cage fold, then fit, log and register the final model.

    Schemes in evaluation.schemes: balanced (a male and a female cage held out together,
    the headline), loco (the paper's leave-one-cage-out) and kfold (cages ignored). With
    tuning.enabled, Optuna tunes the CNN inside each outer fold of tuning.schemes on that
    fold's training cages only (nested CV; tuning.mode flat tunes on the balanced score
    itself, quicker but selection-biased and never promoted); the other schemes, and every
    scheme with tuning off, train the cnn section's fixed setting (tuning off: with a
    permutation p-value in the balanced scheme). Writes reports/cnn.json (metrics per
    scheme), reports/cnn/SCHEME/ and reports/cnn/final.json; logs one MLflow run per scheme
    with a nested run per fold (and per tuning trial), and a cnn-final run whose model is
    registered as registry.model_name. It becomes champion only if its balanced accuracy
    is significantly above chance and its registry.metric beats the current champion's.
    """
    from lmt_stereotype.evaluation import held_out_models
    from lmt_stereotype.files import atomic_dir
    from lmt_stereotype.models import save_cnn
    from lmt_stereotype.tracking import stage_run
    from lmt_stereotype.tuning import evaluate_cnn, run_studies

    params = load_params(params_path)
    stacks = _stacks(params)
    _check_design(params_path, params, stacks)
    models = {"cnn": (partial(evaluate_cnn, params=params, progress=_progress()), ("cnn", "tuning"))}
    with stage_run("train", params) as stage, atomic_dir(params.data.models / "cnn") as saved:
        if params.tuning.enabled and params.tuning.mode == "nested":
            run_studies(params, progress=_progress())  # in parallel processes; the evaluation then reads them
        evaluations = _evaluate_models(stage, params, stacks, models)["cnn"]
        balanced = evaluations["balanced"]  # for explanation: a model that never saw the cage, for each cage
        for cage, model in held_out_models(balanced.result, stacks.cage).items():
            save_cnn(model, stacks.X.shape[1:3], saved / "held_out" / f"{cage}.npz")
        _register_final(stage, params, stacks, balanced, saved / "final.npz")


@app.command()
def tune(
    params_path: ParamsOpt = Path("params.yaml"),
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, help="Local worker processes.")] = 1,
) -> None:
    """Run the Optuna studies `train` needs, with local workers sharing the tuning.storage study.

    One study per outer cage fold of each scheme and one for the final model. Start this
    on several machines with one PostgreSQL tuning.storage and they share every study;
    `train` afterwards only reads the finished studies.
    """
    import pandas as pd

    from lmt_stereotype.files import write_table
    from lmt_stereotype.tracking import stage_run
    from lmt_stereotype.tuning import run_workers

    params = load_params(params_path)
    if not params.tuning.enabled:
        raise InputError(params_path, "tuning.enabled is false: there is nothing to tune")
    _check_design(params_path, params, _stacks(params))
    with stage_run("tune", params, ("cnn", "tuning")) as run:
        studies = pd.DataFrame(run_workers(params, workers, progress=_progress()))
        run.log_metrics({"n_studies": len(studies), "n_trials": int(studies["n_finished"].sum()), "workers": workers})
        table = params.data.reports / "tuning_studies.csv"
        write_table(studies, table)
        run.log_artifact(table)
    log.info(
        "tune: %d studies, %d finished trials, %d workers -> %s",
        len(studies),
        studies["n_finished"].sum(),
        workers,
        params.tuning.storage,
    )


@app.command()
def explain(
    params_path: ParamsOpt = Path("params.yaml"),
    mouse: Annotated[
        str | None, typer.Option(help="Only draw the paper's Figure 1 for this mouse-recording (RECORDING:ANIMAL).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="With --mouse: the PNG to write [default: mouse_<sample>.png].")
    ] = None,
) -> None:
    """Where and when the classes differ, in figures and arrays under reports/explain/.

    For the final CNN (all recordings) and for each cage's held-out CNN (the balanced
    fold that held it out) on the cage it never saw: every channel's class-averaged
    activation map on the cage (the paper's Figure 3, spots marked by a permutation rule),
    Integrated Gradients and Grad-CAM per class, attribution per time interval with the
    light phases, and the paper's Figure 1 for one mouse of each class. Logged to MLflow and attached to the
    registered model version.
    """
    import json

    import numpy as np

    from lmt_stereotype.explanation import explain_held_out, explain_model, mouse_figures
    from lmt_stereotype.files import atomic_dir
    from lmt_stereotype.models import load_cnn
    from lmt_stereotype.registry import attach
    from lmt_stereotype.tracking import stage_run

    params = load_params(params_path)
    stacks = _stacks(params)
    if mouse is not None:
        from lmt_stereotype.explanation import mouse_sample_figure

        hits = np.flatnonzero(stacks.sample == mouse)
        if not len(hits):
            known = ", ".join(stacks.sample[:3])
            raise InputError(params.data.stacks, f"no mouse-recording {mouse!r} (samples look like {known}, ...)")
        path = out or Path(f"mouse_{mouse.replace(':', '_')}.png")
        log.info("explain: %s -> %s", mouse, mouse_sample_figure(stacks, hits[0], params, path))
        return
    saved = params.data.models / "cnn"
    if not (saved / "final.npz").exists():
        raise InputError(saved / "final.npz", "no trained CNN; run `lmt-stereotype train` first")
    final = load_cnn(saved / "final.npz")
    folds = {p.stem: load_cnn(p) for p in sorted((saved / "held_out").glob("*.npz"))}
    missing = sorted(set(stacks.cage) - set(folds))
    if missing:
        raise InputError(saved / "held_out", f"no held-out model for cage(s) {', '.join(missing)}; run `train` again")
    folder = params.data.reports / "explain"
    with stage_run("explain", params, ("explain", "cage_layout")) as run:
        with atomic_dir(folder) as out:
            explain_model(final, stacks, params, out / "final", "final model, on its training recordings")
            explain_held_out(folds, stacks, params, out / "held_out")
            mouse_figures(stacks, params, out / "mice")
        run.log_artifacts(folder, "explain")
        record_path = params.data.reports / "cnn" / "final.json"
        if record_path.exists():
            uri = attach(json.loads(record_path.read_text()), folder, "explain")
            run.set_tags({"registered_explanation": uri})
    log.info("explain: %d files -> %s", sum(1 for p in folder.rglob("*") if p.is_file()), folder)


@app.command()
def baselines(params_path: ParamsOpt = Path("params.yaml")) -> None:
    """Cross-validate PCA + 1-nearest-neighbour and PCA + SVM on the same folds as the CNN.

    Writes reports/knn.json, reports/svm.json and their folders, with the same metric
    names as the CNN, so MLflow and `dvc metrics show` put the three side by side.
    """
    from lmt_stereotype.evaluation import evaluate
    from lmt_stereotype.models import make_baseline
    from lmt_stereotype.tracking import stage_run

    params = load_params(params_path)
    n = params.baselines.n_permutations
    models = {}
    for kind in ("knn", "svm"):
        make = partial(make_baseline, kind, params.baselines)
        run = partial(
            evaluate,
            kind,
            make,
            params=params.evaluation,
            n_permutations=n,
            progress=_progress(),
            tags={"tuning": "off"},
        )
        models[kind] = (run, ("baselines",))
    stacks = _stacks(params)
    _check_design(params_path, params, stacks, tuned=False)
    with stage_run("baselines", params) as stage:
        _evaluate_models(stage, params, stacks, models)


@app.command()
def report(params_path: ParamsOpt = Path("params.yaml")) -> None:
    """Write the results page a lab reads: reports/report/index.html, one self-contained file.

    The cohort, CNN vs 1-NN vs SVM (accuracy with intervals, balanced, female and male
    accuracy, permutation p-value, chance), the confusion matrices beside the paper's
    Table 1, the activation maps and the time importance; their PNGs sit next to it.
    Built from the other stages' reports only, and logged to MLflow.
    """
    from lmt_stereotype.files import atomic_dir
    from lmt_stereotype.report import write_report
    from lmt_stereotype.tracking import provenance_tags, stage_run

    params = load_params(params_path)
    folder = params.data.reports / "report"
    provenance = provenance_tags(params)
    with stage_run("report", params) as run:
        with atomic_dir(folder) as out:
            write_report(params, out, provenance)
        run.log_artifacts(folder, "report")
    log.info("report: %s (open it in a browser)", folder / "index.html")


@app.command()
def predict(
    db: Annotated[Path, typer.Argument(help="An LMT recording (.sqlite).", readable=False)],  # our own message
    model: Annotated[
        str | None, typer.Option(help="MLflow model URI [default: models:/<registry.model_name>@champion].")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the table (.csv or .parquet).")] = None,
    params_path: ParamsOpt = Path("params.yaml"),
) -> None:
    """Classify every identified mouse of a recording with a registered model.

    Stops and stacks are computed with the stops and histograms parameters stored in the
    model, not today's params.yaml, which says only where MLflow is, the registered name
    and the camera geometry (lmt) of the recording.
    """
    import mlflow

    from lmt_stereotype.files import write_table
    from lmt_stereotype.predict import predict_recording
    from lmt_stereotype.tracking import check_reachable, tracking_uri

    params = load_params(params_path)
    mlflow.set_tracking_uri(tracking_uri(params.mlflow))
    check_reachable(mlflow.get_tracking_uri())
    uri = model or f"models:/{params.registry.model_name}@champion"
    table = predict_recording(db, uri, params.lmt)
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if out is not None:
        write_table(table, out)
        log.info("predict: %d animals -> %s", len(table), out)


def _stacks(params: Params):
    from lmt_stereotype.histograms import Stacks

    if not params.data.stacks.exists():
        raise InputError(params.data.stacks, "no histogram stacks; run `lmt-stereotype preprocess` first")
    return Stacks.load(params.data.stacks)


def _check_design(params_path: Path, params: Params, stacks, tuned: bool = True) -> None:
    """Refuse in one line a cohort that a scheme or (``tuned``) the nested tuning cannot fold.

    Balanced folds need 2 cages of each sex; nested tuning needs 2 cages of each sex
    inside every outer training set. A fixed ``cnn`` setting outside the search space is
    worth a warning: it is still tried.
    """
    from lmt_stereotype.evaluation import make_folds
    from lmt_stereotype.tuning import inner_folds, outside_space

    tuning = params.tuning.model_copy(update={"enabled": params.tuning.enabled and tuned})
    if tuning.enabled:
        for problem in outside_space(params.cnn, tuning):
            log.warning("%s: %s; it is still tried as the fixed trial", params_path, problem)
    try:
        for scheme in params.evaluation.schemes:
            folds = make_folds(scheme, stacks.cage, params.evaluation, stacks.y)
            if tuning.enabled and tuning.mode == "nested" and scheme in tuning.schemes:
                for fold in folds:
                    inner_folds(stacks.cage[fold.train], stacks.y[fold.train], tuning.inner_folds)
    except ValueError as exc:
        raise InputError(
            params.data.stacks, f"{exc} ({len(set(stacks.cage))} cages); add cages or change {params_path}"
        ) from None


def _evaluate_models(run, params: Params, stacks, models: dict) -> dict[str, dict[str, Any]]:
    """Evaluate each model under each scheme; write its reports and log its MLflow runs under ``run``.

    ``models`` maps a name to (``run(stacks, scheme) -> Evaluation``, parameter sections).
    Returns each model's Evaluation per scheme.
    """
    from lmt_stereotype.evaluation import CAVEATS, SCHEMES, write_reports
    from lmt_stereotype.files import atomic_dir, write_json
    from lmt_stereotype.tracking import flat_params, provenance_tags

    provenance = provenance_tags(params)
    evaluations = {}
    for model, (evaluate_scheme, sections) in models.items():
        evaluations[model] = {}
        with atomic_dir(params.data.reports / model) as folder:
            for scheme in params.evaluation.schemes:
                evaluations[model][scheme] = result = evaluate_scheme(stacks, scheme)
                files = write_reports(result, folder / scheme)
                tags = {"model_family": model, "cv_scheme": scheme, **result.tags, **provenance}
                described = {"cv_scheme_name": SCHEMES[scheme], "cv_scheme_caveat": CAVEATS[scheme]}
                if result.warning:
                    described["below_chance_warning"] = result.warning
                with run.child(f"{model}-{scheme}", {**tags, **described}) as parent:
                    parent.log_params(flat_params(params, (*sections, "evaluation", "histograms")))
                    parent.log_metrics(result.metrics)
                    for path in files:
                        parent.log_artifact(path)
                    for fold, metrics in result.fold_metrics.items():
                        with parent.child(f"{model}-{scheme}-{fold}", {**tags, "fold": fold}) as child:
                            child.log_metrics(metrics)
                            if fold in result.loss_curves:
                                child.log_series("train_loss", result.loss_curves[fold])
                            trials = result.trials.get(fold, [])
                            _log_trials(child, f"{model}-{scheme}-{fold}", trials, {**tags, "fold": fold})
                _log_summary(model, scheme, result.metrics, result.warning)
        per_scheme = {scheme: dict(sorted(e.metrics.items())) for scheme, e in evaluations[model].items()}
        write_json(per_scheme, params.data.reports / f"{model}.json", sort_keys=False)  # balanced first
    return evaluations


def _log_trials(run, prefix: str, trials: list[dict], tags: dict) -> None:
    """One nested run per Optuna trial, with its parameters and its inner cross-validated accuracy."""
    for trial in trials:
        trial_tags = {**tags, "trial": trial["number"], "trial_state": trial["state"]}
        with run.child(f"{prefix}-trial{trial['number']}", trial_tags) as t:
            t.log_params(trial["params"])
            if trial["value"] is not None:
                t.log_metrics({"inner_accuracy": trial["value"]})


def _register_final(run, params: Params, stacks, evidence, path: Path) -> None:
    """Fit the final model on every recording, save it to ``path``, log it under ``run`` and register it.

    ``evidence`` is the CNN's balanced-scheme Evaluation: what to expect of the final
    model, and what decides its alias (:func:`~lmt_stereotype.registry.promotion`). A model
    identical to a registered version (same settings, weights and evidence: an unchanged
    pipeline run again) is not registered twice.
    """
    from lmt_stereotype.evaluation import SCHEMES, above_chance
    from lmt_stereotype.files import write_json
    from lmt_stereotype.models import save_cnn
    from lmt_stereotype.registry import describe, fingerprint, log_model, register, registered_already
    from lmt_stereotype.tracking import flat_params, provenance_tags
    from lmt_stereotype.tuning import fit_final, trial_records

    metrics, scheme = evidence.metrics, evidence.scheme
    classifier, study = fit_final(stacks, params)
    save_cnn(classifier, stacks.X.shape[1:3], path)
    tags = {"model_family": "cnn", "final": "true", **evidence.tags, **provenance_tags(params)}
    setting = classifier.get_params()
    digest = fingerprint(classifier, {"metrics": metrics, "tags": evidence.tags})
    with run.child("cnn-final", {**tags, "cv_scheme": scheme, "fingerprint": digest}) as final:
        final.log_params(
            {
                **{f"model.{k}": v for k, v in setting.items()},
                **flat_params(params, ("histograms", "stops", "registry")),
            }
        )
        final.log_metrics(metrics)  # what to expect of this model: its balanced (nested) cross-validation
        final.log_series("train_loss", classifier.loss_curve_)
        if study is not None:
            _log_trials(final, "cnn-final", trial_records(study), tags)
        registration = registered_already(params.registry.model_name, digest)
        reused = registration is not None
        if not reused:
            info = log_model(classifier, params, stacks.X[:1])
            version_tags = {
                **tags,
                "cv_scheme": scheme,
                "fingerprint": digest,
                "run_id": final.run.info.run_id,
                "params": setting,
                "histograms": params.histograms.model_dump(mode="json"),
            }
            significant = above_chance(metrics, params.evaluation.confidence)
            biased = evidence.tags.get("selection_biased") == "true"  # a flat-tuned score was chosen by looking
            description = describe(metrics, SCHEMES[scheme], tags)
            registration = register(
                info.model_uri, params.registry, metrics, version_tags, description, significant, biased
            )
        final.set_tags(
            {
                "registered_model": registration.name,
                "registered_version": registration.version,
                "registered_alias": registration.alias,
                "promotion_reason": registration.reason,
            }
        )
    record = {k: getattr(registration, k) for k in ("name", "version", "alias", "metric", "value", "reason")}
    record["model_uri"] = f"models:/{registration.name}/{registration.version}"
    write_json(record, params.data.reports / "cnn" / "final.json")
    if reused:
        name, version, alias = registration.name, registration.version, registration.alias
        log.info("train: this final model is registered already: %s version %s (%s)", name, version, alias)
        return
    log.info(
        "train: final model registered as %s version %s: %s (%s)",
        registration.name,
        registration.version,
        registration.alias,
        registration.reason,
    )


def _log_summary(model: str, scheme: str, m: dict[str, float], warning: str | None) -> None:
    log.info(
        "%s %s: accuracy %.3f [%.3f, %.3f] (chance %.2f, p = %.3g, below chance p = %.3g), females %.3f, males %.3f",
        model,
        scheme,
        m["accuracy"],
        m["accuracy_ci_low"],
        m["accuracy_ci_high"],
        m["chance_level"],
        m["permutation_p_value"],
        m["below_chance_p"],
        m["accuracy_female"],
        m["accuracy_male"],
    )
    if warning:
        log.warning("%s %s: %s", model, scheme, warning)


def _interrupt(signum: int, frame: Any) -> None:
    """Ctrl-C (SIGINT) or `kill`/dvc stopping (SIGTERM): unwind as KeyboardInterrupt, in this process only.

    Unwinding ends the MLflow runs KILLED and removes temporary outputs. Forked worker
    processes inherit this handler and ignore the signal (a terminal sends it to the
    whole process group): the parent decides, and what a worker writes goes to a
    temporary folder that the parent removes.
    """
    if os.getpid() != _state["pid"]:
        return
    _state["interrupted"] = signal.Signals(signum).name
    raise KeyboardInterrupt


def _report_interrupt() -> None:
    typer.echo(
        f"interrupted ({_state.get('interrupted') or 'SIGINT'}): nothing is half-written, every output is its "
        "previous or its new version; run the command again to finish",
        err=True,
    )


def main() -> None:
    """Console entry point: a known problem is one line and its exit code (2 input, 3 environment), no traceback."""
    _state["pid"] = os.getpid()
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app()
    except ProblemError as exc:
        if _state["debug"]:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except OSError as exc:  # a write outside the atomic helpers (an MLflow artifact copy) on a full disk
        from lmt_stereotype.files import cannot_write

        reason = cannot_write(exc)
        if reason is None or _state["debug"]:
            raise
        typer.echo(f"error: cannot write{f' {exc.filename}' if exc.filename else ''}: {reason}", err=True)
        sys.exit(3)
    except KeyboardInterrupt:  # before or after typer, which turns it into a silent exit 130
        _report_interrupt()
        sys.exit(130)
    except SystemExit as exc:
        if exc.code == 130 and _state.get("interrupted"):
            _report_interrupt()
        raise
