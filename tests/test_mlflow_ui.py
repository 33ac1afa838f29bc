"""The MLflow UI as a user comparing models sees it, in headless Chromium.

``mlflow server`` runs on loopback over a store holding the demo pipeline's runs (simulate,
preprocess, train, baselines, explain on a small cohort). The page must show the CNN, 1-NN and
SVM runs with the metrics they logged, their comparison, the confusion matrix and the
activation maps, and the registered model with its ``champion`` alias. Screenshots go to
``$LMT_UI_SCREENSHOTS`` (default: a temporary folder, printed). Debian's ``chromium`` drives
the pages through Playwright; no browser is downloaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from helpers.cohort import BIN, cli, small_params
from helpers.mlflow_server import running_mlflow

CHROMIUM = shutil.which("chromium") or next((p for p in ("/usr/bin/chromium",) if Path(p).exists()), None)
if CHROMIUM is None:
    REASON = "Chromium not installed (apt-get install chromium); the MLflow UI test needs it"
elif importlib.util.find_spec("playwright") is None:
    REASON = "playwright not installed (pip install -e '.[dev]'); the MLflow UI test needs it"
else:
    REASON = None
pytestmark = [pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

PIPELINE = {
    "cnn": {"epochs": 2, "n_permutations": 0, "kernel_sizes": [3, 5], "channels": [2, 2]},
    "baselines": {"n_permutations": 3},
    "evaluation": {"schemes": ["balanced", "loco"], "matchings": 1, "n_bootstrap": 50, "chance_permutations": 50},
    "tuning": {"mode": "off"},
    "explain": {"n_permutations": 19, "ig_steps": 4},
}
"""Stages that run in seconds: the UI is under test here, not the models (test_training.py)."""

MODELS = {"cnn": "cnn-balanced", "knn": "knn-balanced", "svm": "svm-balanced"}
COLUMNS = ("accuracy", "balanced_accuracy", "accuracy_female", "accuracy_male")
REGISTERED = "lmt-stereotype-cnn"
TRAINING = "workflowType=machine_learning"  # the UI's "Model training" view, not its GenAI default
TIMEOUT_MS = 60_000


@dataclass(frozen=True)
class Store:
    """What the pipeline logged, read back through MLflow's client: what the UI must show."""

    folder: Path
    uri: str
    experiment_id: str
    runs: dict[str, str]  # model -> run id of its balanced-scheme run
    metrics: dict[str, dict[str, float]]  # model -> metric -> value
    loco_run: str  # the CNN's leave-one-cage-out run, with its caveat
    version: str  # the registered version of this pipeline
    alias: str  # its alias: champion, or challenger when not above chance (a tiny CNN trained 2 epochs)
    final_run: str  # run that logged the registered model (and holds the explanations)


@pytest.fixture(scope="module")
def store(module_tmp) -> Store:
    """The demo pipeline on a 4-cage simulated cohort, tracked into a store of its own.

    With ``$LMT_UI_PROJECT`` (a project folder after ``make run``) the test looks at that
    project's store instead, its latest runs: that is how README's screenshots are taken.
    """
    if os.environ.get("LMT_UI_PROJECT"):
        folder = Path(os.environ["LMT_UI_PROJECT"]).resolve()
        uri = f"sqlite:///{folder / 'mlflow.db'}"
    else:
        folder = module_tmp.mktemp("ui_project")
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        small_params(folder, n_cages=4, sections=PIPELINE)
        with pytest.MonkeyPatch.context() as env:
            env.setenv("MLFLOW_TRACKING_URI", uri)
            for stage in ("simulate", "preprocess", "train", "baselines", "explain"):
                cli(stage, cwd=folder)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("lmt-stereotype")
    runs, metrics = {}, {}
    for model, name in MODELS.items():
        (run,) = client.search_runs(
            [experiment.experiment_id],
            f"attributes.run_name = '{name}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        runs[model], metrics[model] = run.info.run_id, run.data.metrics
    (loco,) = client.search_runs(
        [experiment.experiment_id],
        "attributes.run_name = 'cnn-loco'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    final = json.loads((folder / "reports/registered_model.json").read_text())
    version = client.get_model_version(REGISTERED, final["version"])
    return Store(
        folder,
        uri,
        experiment.experiment_id,
        runs,
        metrics,
        loco.info.run_id,
        str(version.version),
        final["alias"],
        version.run_id,
    )


@pytest.fixture(scope="module")
def server(store: Store, tmp_path_factory) -> Iterator[str]:
    """``mlflow server`` on a free loopback port over the store; its base URL once /health answers."""
    log = tmp_path_factory.mktemp("mlflow_server") / "server.log"
    with running_mlflow([BIN / "mlflow", "server", "--backend-store-uri", store.uri, "--workers", "1"], log) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    """A fresh browser profile at the server, wide enough for the metric columns."""
    context = browser.new_context(base_url=server, viewport={"width": 1920, "height": 1080})
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("LMT_UI_SCREENSHOTS") or tmp_path_factory.mktemp("ui_screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"MLflow UI screenshots: {folder}")
    return folder


def visit(page, fragment: str, ready: str) -> None:
    """Open ``#/fragment`` in the training view, wait for ``ready`` text, close the chat assistant if open."""
    joiner = "&" if "?" in fragment else "?"
    page.goto(f"/#/{fragment}{joiner}{TRAINING}")
    page.get_by_text(ready, exact=True).first.wait_for()
    close = page.locator("[data-component-id='mlflow.assistant.chat_panel.close']")
    if close.is_visible():
        close.click()


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


def shown_image_size(page) -> tuple[int, int]:
    """Natural size of the artifact preview image, once the browser has decoded it."""
    image = page.locator("img[src^='blob:']").first
    image.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    return tuple(image.evaluate("img => [img.naturalWidth, img.naturalHeight]"))


SAME_LINE = """([label, selector]) => {
  const cells = [...document.querySelectorAll(selector)];
  const name = cells.find(c => c.textContent.trim() === label);
  if (!name) return null;
  const top = name.getBoundingClientRect().top;
  return cells.filter(c => c !== name && Math.abs(c.getBoundingClientRect().top - top) < 2)
    .sort((a, b) => a.getBoundingClientRect().left - b.getBoundingClientRect().left)
    .map(c => c.textContent.trim());
}"""
"""Texts on the same line as the cell reading ``label``, left to right: a row as the eye reads it."""


def test_the_runs_table_lists_cnn_1nn_and_svm_with_their_accuracy_columns(page, store, shots):
    search = urllib.parse.quote("attributes.run_name LIKE '%-balanced'")
    visit(page, f"experiments/{store.experiment_id}/runs?searchFilter={search}", "baselines")
    for parent in ("train", "baselines"):  # the model runs are nested under their stage
        row = page.locator("[role=row]", has_text=parent)
        row.locator("button[data-component-id*='runnamecellrenderer']").click()
    for name in MODELS.values():
        page.get_by_role("link", name=name, exact=True).wait_for()
    page.get_by_role("button", name="Columns", exact=True).click()
    for column in COLUMNS:
        page.get_by_text(column, exact=True).click()
    page.keyboard.press("Escape")
    for model, run_id in store.runs.items():
        row = page.locator(f"[role=row][row-id='{run_id}']")
        assert MODELS[model] in row.first.inner_text()
        for column in COLUMNS:
            shown = row.locator(f"[col-id='metrics.`{column}`']").inner_text()
            assert float(shown) == pytest.approx(store.metrics[model][column], abs=1e-4), (model, column, shown)
    page.screenshot(path=shots / "runs.png")


def test_the_compare_view_puts_the_three_models_metrics_side_by_side(page, store, shots):
    ids = list(store.runs.values())
    query = urllib.parse.urlencode({"runs": json.dumps(ids), "experiments": json.dumps([store.experiment_id])})
    visit(page, f"compare-runs?{query}", "Comparing 3 Runs from 1 Experiment")
    run_ids = page.get_by_role("row").filter(has_text="Run ID:").inner_text()
    assert sorted(ids, key=run_ids.index) == ids  # one column per run, in the order asked for
    names = page.get_by_role("row").filter(has_text="Run Name:").inner_text().split()
    assert names[-3:] == [MODELS[m] for m in store.runs]
    grid_cells = "[role=grid] [role=rowgroup] > div"
    page.get_by_text("balanced_accuracy", exact=True).first.wait_for()
    for column in COLUMNS:
        shown = page.evaluate(SAME_LINE, [column, grid_cells])
        expected = [store.metrics[m][column] for m in store.runs]
        assert shown is not None and len(shown) == 3, (column, shown)
        assert [float(v) for v in shown] == pytest.approx(expected, abs=6e-4), (column, shown)  # 3 decimals
    page.get_by_role("button", name="Clear All").click()  # the plot: the four metrics as parallel axes
    metrics = page.get_by_role("combobox").nth(1)
    metrics.click(force=True)
    for column in COLUMNS:
        page.keyboard.type(column)
        page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    for column in COLUMNS:
        page.locator("svg").get_by_text(column, exact=True).first.wait_for()
    page.get_by_text("Parameters", exact=True).first.click()  # folded: plot, runs and metrics in one view
    page.set_viewport_size({"width": 1920, "height": 1400})
    page.wait_for_timeout(1000)  # the plot redrawn at the new size
    page.screenshot(path=shots / "compare.png")


def test_the_confusion_matrix_is_shown_among_the_cnn_runs_artifacts(page, store, shots):
    run_id = store.runs["cnn"]
    visit(page, f"experiments/{store.experiment_id}/runs/{run_id}/artifacts/confusion.png", "confusion.png")
    for name in ("confusion.json", "predictions.csv", "loss.png"):
        page.get_by_text(name, exact=True).first.wait_for()
    page.get_by_text(f"{run_id}/artifacts/confusion.png", exact=False).first.wait_for()
    figure = store.folder / "reports/cnn/balanced/confusion.png"
    assert shown_image_size(page) == png_size(figure)  # the logged figure itself, decoded in the page
    page.screenshot(path=shots / "artifacts_confusion.png")


def test_the_activation_maps_are_shown_among_the_registered_models_artifacts(page, store, shots):
    path = "explain/final/activation_k3.png"
    visit(page, f"experiments/{store.experiment_id}/runs/{store.final_run}/artifacts/{path}", "activation_k3.png")
    page.get_by_text("cnn-final", exact=True).first.wait_for()  # the run that logged the registered model
    for name in ("integrated_gradients.png", "time_importance.png", "held_out", "mice"):
        page.get_by_text(name, exact=True).first.wait_for()
    page.get_by_text(path, exact=True).first.wait_for()
    assert shown_image_size(page) == png_size(store.folder / "reports" / path)
    page.screenshot(path=shots / "artifacts_activation.png")


def test_the_leave_one_cage_out_run_carries_its_caveat(page, store):
    visit(page, f"experiments/{store.experiment_id}/runs/{store.loco_run}", "cnn-loco")
    page.get_by_text("stratification bias", exact=False).first.wait_for()


def test_the_registered_model_shows_its_version_its_alias_and_where_it_comes_from(page, store, shots):
    version = f"Version {store.version}"
    visit(page, f"models/{REGISTERED}", version)
    page.get_by_text(REGISTERED, exact=True).first.wait_for()
    row = page.get_by_role("row").filter(has_text=version)
    assert store.alias in row.inner_text()
    page.screenshot(path=shots / "model_registry.png")

    visit(page, f"models/{REGISTERED}/versions/{store.version}", version)
    page.get_by_text(store.alias, exact=False).first.wait_for()
    page.get_by_text("above chance", exact=False).first.wait_for()  # promotion_reason: why this alias
    source = page.get_by_role("link", name="cnn-final", exact=True)
    assert store.final_run in source.get_attribute("href")
    page.get_by_text(f"runs:/{store.final_run}/explain", exact=True).wait_for()  # the explanations, attached
    page.get_by_text("balanced accuracy", exact=False).first.wait_for()  # the description: what to expect of it
    page.screenshot(path=shots / "model_version.png")
