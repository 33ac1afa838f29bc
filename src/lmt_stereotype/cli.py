"""``lmt-stereotype``: one subcommand per stage of :mod:`lmt_stereotype.stages`.

Each subcommand reads the parameter file and calls its stage's ``run``: the same
function the MLproject entry point and the ``dvc.yaml`` stage of that name call. Bad
input exits with code 2 and a one-line message naming the file (and the row or key)
and the problem; an output that cannot be written (disk full)
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
from pathlib import Path
from typing import Annotated, Any

import typer

from lmt_stereotype.config import load_params
from lmt_stereotype.errors import ProblemError

app = typer.Typer(
    help="Tell a laboratory mouse's sex and age from where and when it stops (Live Mouse Tracker).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)
log = logging.getLogger("lmt_stereotype")

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="Parameter file.", show_default=True)]
_state = {"debug": False}


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
    seed: Annotated[int | None, typer.Option(help="Simulation seed [default: simulate.seed].")] = None,
    cages: Annotated[int | None, typer.Option(min=2, help="Number of cages [default: simulate.n_cages].")] = None,
    force: Annotated[bool, typer.Option(help="Rewrite even if the folder is up to date.")] = False,
) -> None:
    """Write the synthetic cohort (LMT databases + manifest) into the raw folder.

    Skips when the folder already holds the same simulation; refuses to overwrite a
    folder of real recordings (one without simulation.json). Another --seed and --out
    write an independent cohort (other mice, cages, clocks), e.g. for `validate`.
    """
    from lmt_stereotype.stages import simulate

    simulate.run(load_params(params_path), params_path, out, force, seed=seed, n_cages=cages)


@app.command()
def stops(
    params_path: ParamsOpt = Path("params.yaml"),
    workers: Annotated[
        int, typer.Option("--workers", "-w", min=0, help="Recordings read at once (0: one per core).")
    ] = 0,
) -> None:
    """Detect every stop of every mouse of the manifest, and write the sample table.

    One table of stops per recording (data.stops) and one row per mouse-recording
    (data.samples). The results do not depend on --workers.
    """
    from lmt_stereotype.stages import stops

    stops.run(load_params(params_path), workers)


@app.command()
def histograms(params_path: ParamsOpt = Path("params.yaml")) -> None:
    """Build the stacks of stop histograms (T intervals x N x N tiles) of every mouse-recording."""
    from lmt_stereotype.stages import histograms

    histograms.run(load_params(params_path))


@app.command()
def preprocess(
    params_path: ParamsOpt = Path("params.yaml"),
    workers: Annotated[int, typer.Option("--workers", "-w", min=0, help="Recordings read at once (0: per core).")] = 0,
) -> None:
    """Stops then histograms, as one MLflow run with a nested run per stage."""
    from lmt_stereotype.stages import preprocess

    preprocess.run(load_params(params_path), workers)


@app.command()
def train(params_path: ParamsOpt = Path("params.yaml")) -> None:
    """Cross-validate the paper's CNN per cage fold, fit the final model, register it and decide its alias.

    Under each of evaluation.schemes (balanced first), tuned as tuning.mode says; writes
    reports/cnn.json, reports/cnn/SCHEME/ and reports/registered_model.json. The final
    model becomes champion only if it is significantly above chance and beats the champion.
    """
    from lmt_stereotype.stages import train

    train.run(load_params(params_path), params_path)


@app.command()
def baselines(params_path: ParamsOpt = Path("params.yaml")) -> None:
    """Cross-validate PCA + 1-nearest-neighbour and PCA + SVM on the same folds as the CNN.

    Writes reports/knn.json, reports/svm.json and their folders, named as the CNN's.
    """
    from lmt_stereotype.stages import baselines

    baselines.run(load_params(params_path), params_path)


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
    """Where and when the classes differ: activation maps, attributions, time importance (reports/explain/).

    For the final CNN and for each cage's held-out CNN on the cage it never saw; logged to
    MLflow and attached to the registered model version.
    """
    from lmt_stereotype.stages import explain

    params = load_params(params_path)
    if mouse is not None:
        explain.one_mouse(params, mouse, out)
    else:
        explain.run(params)


@app.command()
def report(params_path: ParamsOpt = Path("params.yaml")) -> None:
    """Write the results page a lab reads: reports/report/index.html, one self-contained file.

    Built from the other stages' reports only (no retraining), and logged to MLflow.
    """
    from lmt_stereotype.stages import report

    report.run(load_params(params_path))


@app.command()
def tune(
    params_path: ParamsOpt = Path("params.yaml"),
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, help="Local worker processes.")] = 1,
) -> None:
    """Run the Optuna studies `train` needs, with local workers sharing the tuning.storage studies.

    Several machines with one PostgreSQL tuning.storage share every study; `train` then
    only reads them.
    """
    from lmt_stereotype.stages import tune

    tune.run(load_params(params_path), params_path, workers)


ModelOpt = Annotated[
    str | None,
    typer.Option(
        help="MLflow model URI [default: models:/<registry.model_name>@champion; -<target.column> appended "
        "unless the target is class]."
    ),
]


@app.command()
def predict(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            metavar="INPUT", help="LMT recordings (.sqlite), folders of them, or manifests (.csv).", readable=False
        ),
    ],
    model: ModelOpt = None,
    out: Annotated[Path | None, typer.Option(help="Also write the table (.csv or .parquet).")] = None,
    params_path: ParamsOpt = Path("params.yaml"),
) -> None:
    """Classify every identified mouse of one or more recordings with a registered model.

    A folder means every *.sqlite under it; a manifest, the recordings it lists (labels
    unused). Stops and stacks are made with the parameters stored in the model;
    params.yaml gives only MLflow's place, the registered name, the camera geometry (lmt)
    and the room's time zone. One table for all, and an MLflow run (model version,
    inputs' identities, the table).
    """
    from lmt_stereotype.stages import predict

    table = predict.run(load_params(params_path), inputs, model, out)
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


@app.command()
def validate(
    manifest: Annotated[
        Path, typer.Argument(metavar="MANIFEST", help="The labelled cohort's manifest (.csv).", readable=False)
    ],
    model: ModelOpt = None,
    name: Annotated[
        str | None, typer.Option(help="The cohort's name in tags and reports [default: the manifest's folder].")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Report folder [default: reports/external/NAME].")] = None,
    params_path: ParamsOpt = Path("params.yaml"),
    workers: Annotated[int, typer.Option("--workers", "-w", min=0, help="Recordings read at once (0: per core).")] = 0,
) -> None:
    """Score a registered model on a labelled cohort it never saw, without retraining (external validation).

    Its stops and stacks are made with the parameters stored in the model; a cohort
    sharing a recording with the model's training set is refused. The same metrics as
    cross-validation, chance and a permutation test of the cohort's labels; a report
    folder, an MLflow run linked to the model version, and external.NAME.* tags on it.
    """
    from lmt_stereotype.stages import validate

    validate.run(load_params(params_path), manifest, model, name, out, workers)


@app.command("stop-table")
def stop_table(
    db: Annotated[Path, typer.Argument(metavar="DB", help="One LMT database.", readable=False)],
    out: Annotated[
        Path | None, typer.Option(help="Output table (.csv or .parquet) [default: standard output].")
    ] = None,
    params_path: ParamsOpt = Path("params.yaml"),
    threads: Annotated[int, typer.Option("--threads", "-t", min=0, help="Animals read at once (0: one per core).")] = 0,
) -> None:
    """The stops of one recording as a table (a tool to check a file; the pipeline's stage is `stops`).

    One row per stop: animal_id, rfid, start_frame, end_frame, start_s, duration_s, x_cm,
    y_cm, n_detections.
    """
    from lmt_stereotype.stages import stop_table

    stop_table.run(load_params(params_path), db, out, threads)


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
