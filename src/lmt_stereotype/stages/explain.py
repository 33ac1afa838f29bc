"""explain: where and when the target's classes differ, in figures and arrays under ``reports/explain/``.

For the final CNN (all recordings) and for each cage's held-out CNN (the balanced fold
that held it out) on the cage it never saw: every channel's class-averaged activation map
on the cage (the paper's Figure 3, spots marked by a permutation rule), Integrated
Gradients and Grad-CAM per class, attribution per interval on the room's clock with the
dark phases shaded, and the paper's Figure 1 for one mouse of each class: one panel per
class of the target, for which the CNNs must have been trained. Logged to MLflow and
attached to the registered model version.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from lmt_stereotype.config import Params
from lmt_stereotype.errors import InputError
from lmt_stereotype.explanation import explain_held_out, explain_model, mouse_figures, mouse_sample_figure
from lmt_stereotype.files import atomic_dir
from lmt_stereotype.histograms import Stacks
from lmt_stereotype.models import CNNClassifier, load_cnn
from lmt_stereotype.registry import attach
from lmt_stereotype.tracking import stage_run

log = logging.getLogger("lmt_stereotype")


def load_for(path: Path, stacks: Stacks) -> CNNClassifier:
    """A saved CNN, which must score the stacks' classes in their order (InputError naming it otherwise)."""
    classifier, classes = load_cnn(path)
    if tuple(classes) != tuple(stacks.classes):
        raise InputError(
            path,
            f"trained for target classes {', '.join(classes)}, the stacks are for {stacks.target_column} "
            f"({', '.join(stacks.classes)}); run `lmt-stereotype train` again",
        )
    return classifier


def run(params: Params) -> Path:
    """Explain the final and the held-out CNNs; returns the folder."""
    stacks = Stacks.load(params.data.stacks)
    saved = params.data.models / "cnn"
    if not (saved / "final.npz").exists():
        raise InputError(saved / "final.npz", "no trained CNN; run `lmt-stereotype train` first")
    final = load_for(saved / "final.npz", stacks)
    held_out = {p.stem: load_for(p, stacks) for p in sorted((saved / "held_out").glob("*.npz"))}
    missing = sorted(set(stacks.cage) - set(held_out))
    if missing:
        raise InputError(saved / "held_out", f"no held-out model for cage(s) {', '.join(missing)}; run `train` again")
    folder = params.data.reports / "explain"
    with stage_run("explain", params, ("explain", "room", "cage_layout")) as run:
        with atomic_dir(folder) as out:
            explain_model(final, stacks, params, out / "final", "final model, on its training recordings")
            explain_held_out(held_out, stacks, params, out / "held_out")
            mouse_figures(stacks, params, out / "mice")
        run.log_artifacts(folder, "explain")
        record = params.data.reports / "registered_model.json"
        if record.exists():
            run.set_tags({"registered_explanation": attach(json.loads(record.read_text()), folder, "explain")})
    log.info("explain: %d files -> %s", sum(1 for p in folder.rglob("*") if p.is_file()), folder)
    return folder


def one_mouse(params: Params, mouse: str, out: Path | None = None) -> Path:
    """Only the paper's Figure 1 for one mouse-recording (RECORDING:ANIMAL), to ``out``."""
    stacks = Stacks.load(params.data.stacks)
    hits = np.flatnonzero(stacks.sample == mouse)
    if not len(hits):
        known = ", ".join(stacks.sample[:3])
        raise InputError(params.data.stacks, f"no mouse-recording {mouse!r} (samples look like {known}, ...)")
    path = mouse_sample_figure(stacks, hits[0], params, out or Path(f"mouse_{mouse.replace(':', '_')}.png"))
    log.info("explain: %s -> %s", mouse, path)
    return path
