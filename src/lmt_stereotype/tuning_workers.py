"""Running the tuning studies in worker processes: how the studies run, not what they search.

:mod:`lmt_stereotype.tuning` says what a study is (its search, its name, its folds, the
plan of studies a tuned ``train`` needs) and runs one in the calling process. This
module spreads the plan over processes, which is a separate concern with its own
machinery (spawned pools, stopping the other processes when one fails, per-process
thread counts), so that the search can be read, tested and imported without it:

- :func:`run_studies` (``train``) gives each unfinished study to one process from its
  first trial to its last, so the trials and the settings each study picks are the same
  whatever the number of processes;
- :func:`run_workers` (``tune``) lets several workers, here and on other machines
  sharing one storage, take trials of the same studies.

Process pools are spawned, never forked, so a CNN's torch threads are never copied
into a child mid-use.
"""

from __future__ import annotations

import os
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from multiprocessing import active_children, get_context
from typing import Any

import optuna
from tqdm import tqdm

from lmt_stereotype.config import Params
from lmt_stereotype.histograms import Stacks
from lmt_stereotype.parallel import available_cores, pool_size
from lmt_stereotype.tracking import rooted
from lmt_stereotype.tuning import FINISHED, StudySpec, n_finished, open_study, run_study, study_plan


def _run_worker(params: Params, worker: int, threads: int, progress: bool) -> None:
    """One worker: take part in every study of the plan until each holds its trials."""
    stacks = Stacks.load(params.data.stacks)
    cnn = params.cnn.model_copy(update={"threads": threads})
    for spec in tqdm(
        study_plan(stacks, params), desc=f"tuning (pid {os.getpid()})", disable=not progress, unit="study"
    ):
        run_study(spec, stacks, params, cnn, worker)


def _finish_study(params: Params, spec: StudySpec) -> None:
    """One study, start to end, in this process."""
    run_study(spec, Stacks.load(params.data.stacks), params)


def _wait_all(futures: list, progress: bool = False, desc: str = "") -> None:
    """Wait for every future; on the first failure, or Ctrl-C, stop the other processes at once.

    A trial cut short stays RUNNING in the storage until its heartbeat lapses (60 s),
    then it is retried: the study resumes where it stopped.
    """
    with tqdm(total=len(futures), desc=desc, disable=not progress, unit="study") as bar:
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                bar.update(len(done))
                failed = [f for f in done if f.exception()]
                if failed:
                    raise failed[0].exception()
        except BaseException:  # do not let the others run on to the end of the plan
            for future in pending:
                future.cancel()
            for child in active_children():
                child.terminate()
            raise


def run_studies(params: Params, processes: int = 0, progress: bool = False) -> None:
    """Finish every unfinished study of the plan, ``processes`` studies at a time (0: one per core).

    Each study runs from its first trial to its last in one process, so its sampler's
    draws, its trials and the settings it picks are the same whatever the number of
    processes: with ``cnn.threads`` fixed (params.yaml: 1), ``train`` gives identical
    numbers on any machine, only sooner on more cores. The studies nested in the 12
    outer folds are independent, so on 2 cores they finish about 1.6x sooner than one
    after the other with both cores per fit.
    """
    stacks = Stacks.load(params.data.stacks)
    storage = rooted(params.tuning.storage)
    todo = []
    for spec in study_plan(stacks, params):
        try:
            study = optuna.load_study(study_name=spec.name, storage=storage)
        except KeyError:  # not created yet
            todo.append(spec)
            continue
        if n_finished(study) < params.tuning.n_trials:
            todo.append(spec)
    threads = params.cnn.threads or available_cores()
    n = pool_size(len(todo), max(1, available_cores() // threads) if processes == 0 else processes)
    if n <= 1:
        for spec in tqdm(todo, desc="tuning", disable=not progress, unit="study"):
            run_study(spec, stacks, params)
        return
    with ProcessPoolExecutor(n, mp_context=get_context("spawn")) as pool:
        _wait_all([pool.submit(_finish_study, params, spec) for spec in todo], progress, f"tuning ({n} processes)")


def run_workers(params: Params, n_workers: int, progress: bool = False) -> list[dict[str, Any]]:
    """Run the plan's studies with ``n_workers`` local processes sharing the Optuna storage.

    Workers on other machines pointed at the same (PostgreSQL) storage join the same
    studies; ``train`` then only reads them. Each local worker gets an equal share of the
    cores unless ``cnn.threads`` fixes its threads. Returns one summary row per study.
    """
    stacks = Stacks.load(params.data.stacks)
    storage = rooted(params.tuning.storage)
    plan = study_plan(stacks, params)
    for spec in plan:  # created (and the fixed settings enqueued) once, before workers race for it
        open_study(spec.name, params.tuning, storage, params.cnn)
    threads = params.cnn.threads or max(1, available_cores() // n_workers)
    if n_workers == 1:
        _run_worker(params, 0, threads, progress)
    else:
        with ProcessPoolExecutor(n_workers, mp_context=get_context("spawn")) as pool:
            _wait_all([pool.submit(_run_worker, params, worker, threads, progress) for worker in range(n_workers)])
    rows = []
    for spec in plan:
        study = optuna.load_study(study_name=spec.name, storage=storage)
        done = study.get_trials(deepcopy=False, states=FINISHED)
        rows.append(
            {
                "study": spec.name,
                "n_recordings": len(spec.index),
                "n_finished": len(done),
                "best_value": study.best_value if done else float("nan"),
                "workers": len({t.user_attrs.get("worker") for t in done}),
            }
        )
    return rows
