"""Explanations that can be trusted: maps placed where their receptive fields lie, spots chosen
by a permutation rule, attributions that find a planted region and that a random network lacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.params import DEMO, varied
from scipy.stats import spearmanr

from lmt_stereotype.explanation import (
    _Explainer,
    branch_activations,
    class_means,
    contrast,
    explain_held_out,
    explain_model,
    grad_cam,
    held_out_note,
    integrated_gradients,
    interval_clock,
    logit_contributions,
    map_extent,
)
from lmt_stereotype.figures import clock_label
from lmt_stereotype.histograms import Stacks
from lmt_stereotype.labels import PAPER_CLASSES, Target
from lmt_stereotype.models import CNNClassifier

PAPER = Target("class", PAPER_CLASSES)
AF = PAPER_CLASSES.index("AF")
REGION = (slice(2, 7), slice(12, 17))  # rows (y) 2-6, cols (x) 12-16 of a 20 x 20 grid
KERNELS = (3, 5)


CAGES = np.repeat([f"cage{c}" for c in range(6)], 8)  # single-sex cages of 4 mice at 2 ages
LABELS = 2 * np.repeat(np.arange(6) >= 3, 8).astype(int) + np.tile([0, 1], 24)  # 12 recordings per class


def only_af_planted(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """48 recordings in 6 cages, 12 per class; only adult females stop more in REGION."""
    rng = np.random.default_rng(seed)
    X = rng.poisson(0.5, size=(len(LABELS), 4, 20, 20)).astype(np.float32)
    X[LABELS == AF, :, REGION[0], REGION[1]] += rng.poisson(2.0, size=((LABELS == AF).sum(), 4, 5, 5))
    return X, LABELS


def fit(X, y, epochs: int = 40, seed: int = 0) -> CNNClassifier:
    return CNNClassifier(channels=(8, 8), kernel_sizes=KERNELS, epochs=epochs, lr=0.01, seed=seed, threads=1).fit(X, y)


@pytest.fixture(scope="module")
def planted():
    X, y = only_af_planted()
    return X, y, fit(X, y)


def receptive_rows(cell: int, kernel: int, pool: int) -> range:
    """Input tiles seen by a cell of a conv(kernel) -> pool(pool) map, along one axis."""
    return range(cell * pool, cell * pool + pool + kernel - 1)


def overlaps_region(row: int, col: int, kernel: int, pool: int) -> bool:
    rows, cols = receptive_rows(row, kernel, pool), receptive_rows(col, kernel, pool)
    return bool(set(rows) & set(range(2, 7))) and bool(set(cols) & set(range(12, 17)))


def test_a_map_is_placed_where_its_receptive_fields_lie_in_the_cage():
    assert map_extent(30, 50.0) == (0.0, 50.0, 50.0, 0.0)  # the input grid covers the arena
    left, right, bottom, top = map_extent(30, 50.0, kernel=3, pool=2)  # 28 conv cells -> 14 pooled
    assert left == top == pytest.approx(50 / 30) and right == bottom == pytest.approx(29 * 50 / 30)
    left, right, _, _ = map_extent(30, 50.0, kernel=9, pool=2)  # 22 -> 11 cells, 4 tiles in from each wall
    assert left == pytest.approx(4 * 50 / 30) and right == pytest.approx(26 * 50 / 30)


def test_class_means_leave_a_class_without_recordings_undefined():
    values = np.arange(6, dtype=float).reshape(3, 2)
    means = class_means(values, np.array([0, 0, 2]), 4)
    np.testing.assert_allclose(means[0], [1, 2])
    assert np.isnan(means[1]).all() and np.isnan(means[3]).all()


def test_spots_where_the_classes_do_not_differ_are_as_rare_as_alpha_says():
    """Family-wise over every tile of every channel: a class of a null family gets a spot in about 5% of studies."""
    classes_with_spots = 0
    for seed in range(40):
        values = np.random.default_rng(seed).normal(size=(48, 8, 10, 10))
        result = contrast(values, PAPER, LABELS, CAGES, n_permutations=99, seed=seed)
        classes_with_spots += sum(any(per_map) for per_map in result.spots)
    assert classes_with_spots <= 16  # of 40 x 4 class families: 8 expected at alpha = 0.05
    assert result.difference.shape == (4, 8, 10, 10) and result.threshold.shape == (4,)


def test_activation_spots_of_adult_females_lie_on_the_planted_region(planted):
    X, y, model = planted
    for kernel, acts in zip(KERNELS, branch_activations(model, X)):
        spots = [spot for per_map in contrast(acts, PAPER, y, CAGES, n_permutations=99).spots[AF] for spot in per_map]
        assert spots, kernel
        assert all(overlaps_region(row, col, kernel, 2) for row, col in spots), (kernel, spots)


def test_integrated_gradients_and_logit_shares_peak_on_the_planted_region(planted):
    X, y, model = planted
    ig = class_means(integrated_gradients(model, X)[AF].sum(axis=1), y, 4)[AF]
    row, col = np.unravel_index(np.argmax(ig), ig.shape)
    assert 2 <= row <= 6 and 12 <= col <= 16
    for kernel, share in zip(KERNELS, logit_contributions(model, X)):
        mean = class_means(share[AF], y, 4)[AF]
        row, col = np.unravel_index(np.argmax(mean), mean.shape)
        assert overlaps_region(row, col, kernel, 2), (kernel, row, col)


def test_grad_cam_of_the_wider_branch_peaks_on_the_planted_region(planted):
    """Grad-CAM averages gradients over the map; only the 5x5 branch is reliable here (the 3x3 one
    peaked beside the region for three seeds out of three, which is why the logit shares are drawn too)."""
    X, y, model = planted
    mean = class_means(grad_cam(model, X)[1][AF], y, 4)[AF]
    row, col = np.unravel_index(np.argmax(mean), mean.shape)
    assert overlaps_region(row, col, 5, 1), (row, col)


@pytest.mark.slow
def test_a_randomly_initialised_network_gives_clearly_different_attributions(planted):
    """The model-randomisation sanity check (Adebayo et al. 2018), with Spearman rank correlation."""
    X, y, model = planted
    untrained = fit(X, y, epochs=0, seed=5)
    retrained = fit(X, y, seed=7)

    def ig_map(m):
        return class_means(integrated_gradients(m, X)[AF].sum(axis=1), y, 4)[AF].ravel()

    def share_map(m):
        return class_means(logit_contributions(m, X)[1][AF], y, 4)[AF].ravel()

    def cam_map(m):
        return class_means(grad_cam(m, X)[1][AF], y, 4)[AF].ravel()

    similarity = {
        f.__name__: (spearmanr(f(model), f(untrained))[0], spearmanr(f(model), f(retrained))[0])
        for f in (ig_map, share_map, cam_map)
    }
    for name, (to_random, _) in similarity.items():
        assert to_random < 0.5, (name, similarity)
    for name in ("ig_map", "share_map"):  # Grad-CAM is not even stable across training runs here
        assert similarity[name][0] < similarity[name][1], (name, similarity)
    assert similarity["ig_map"][1] > 0.5  # another training run's map is alike: the measure can say "alike"


def clocked_stacks(n_intervals: int, interval_s: float, seconds_per_hour: float, start_hour) -> Stacks:
    n = len(start_hour)
    ids = np.array([f"r{k}" for k in range(n)])
    X = np.zeros((n, n_intervals, 2, 2), dtype=np.float32)
    return Stacks(
        X=X,
        label=np.array(["AM"] * n),
        classes=PAPER_CLASSES,
        target_column="class",
        groups={},
        cage=np.array(["c1"] * n),
        recording=ids,
        animal_id=np.ones(n, dtype=np.int64),
        sample=ids,
        identity=np.char.add("id-", ids),
        interval_s=interval_s,
        start_hour=np.array(start_hour),
        seconds_per_hour=seconds_per_hour,
    )


def test_the_demo_s_time_plot_shades_the_simulator_s_dark_phases_at_their_clock_times():
    """The demo's 12 intervals of 180 s, on a simulated clock of 30 s per hour starting at 10:00: an interval
    is 6 hours, a day 4 intervals, dark from 20:00 to 08:00."""
    hours, dark = interval_clock(clocked_stacks(12, 180.0, 30.0, [10.0] * 8), (8, 20))
    assert [clock_label(h) for h in hours[:5]] == ["10:00", "16:00", "22:00", "04:00", "10:00"]
    assert dark == [(20.0, 32.0), (44.0, 56.0), (68.0, 80.0)]  # one dark phase every 4 intervals


def test_a_real_recording_s_intervals_are_hours_from_its_first_frame_s_clock_time():
    hours, dark = interval_clock(clocked_stacks(24, 3600.0, 3600.0, [21.5, 21.5]), (7, 19))
    assert clock_label(hours[0]) == "21:30" and clock_label(hours[-1]) == "20:30"
    assert dark == [(21.5, 31.0), (43.0, 45.5)]


def test_attributions_unrelated_to_the_labels_mark_no_spot():
    """Every class's attribution is taken for every recording, so the contrast compares like with like."""
    X, _ = only_af_planted()
    X = np.random.default_rng(3).poisson(0.5, size=X.shape).astype(np.float32)  # no class effect at all
    untrained = fit(X, LABELS, epochs=0)
    ig = integrated_gradients(untrained, X, steps=8).sum(axis=2)[:, :, None]
    assert all(
        spots == [] for per_class in contrast(ig, PAPER, LABELS, CAGES, n_permutations=99).spots for spots in per_class
    )
    assert not any(
        spots
        for share in logit_contributions(untrained, X)
        for per_class in contrast(share[:, :, None], PAPER, LABELS, CAGES, n_permutations=99).spots
        for spots in per_class
    )


def test_integrated_gradients_add_up_to_the_change_of_the_centred_logit(planted):
    """Completeness: the attributions of a stack sum to its logit minus the empty cage's."""
    X, _, model = planted
    ig = integrated_gradients(model, X[:4], steps=64)
    with torch.no_grad():
        logits = model.module_(model.to_tensor(X[:4]))
        empty = model.module_(torch.zeros_like(model.to_tensor(X[:4])))
    change = (logits - logits.mean(1, keepdim=True)) - (empty - empty.mean(1, keepdim=True))
    np.testing.assert_allclose(ig.sum(axis=(2, 3, 4)), change.numpy().T, atol=0.05)


# --- any target: one panel per class ----------------------------------------------------

GENOTYPES = ("WT", "KO")  # not the sorted order: the stacks' order is the panels' order


def genotype_stacks(housing: str) -> Stacks:
    """16 recordings in 4 cages of 4 mice, WT and KO mixed within every cage or one genotype per cage;
    only KO mice stop more in REGION."""
    rng = np.random.default_rng(1)
    n = 16
    ko = np.tile([False, True], n // 2) if housing == "mixed" else np.repeat([False, True], n // 2)
    X = rng.poisson(0.5, size=(n, 4, 20, 20)).astype(np.float32)
    X[ko, :, REGION[0], REGION[1]] += rng.poisson(2.0, size=(ko.sum(), 4, 5, 5))
    ids = np.array([f"r{k}" for k in range(n)])
    return Stacks(
        X=X,
        label=np.where(ko, "KO", "WT"),
        classes=GENOTYPES,
        target_column="genotype",
        groups={"sex": np.repeat(["M", "F"], n // 2)},
        cage=np.repeat([f"cage{c}" for c in range(4)], 4),
        recording=ids,
        animal_id=np.tile(np.arange(1, 5), 4),
        sample=ids,
        identity=np.char.add("id-", ids),
        interval_s=180.0,
        start_hour=np.full(n, 10.0),
        seconds_per_hour=30.0,
    )


@pytest.fixture
def drawn(monkeypatch):
    """Every figure saved meanwhile, as file name -> the figure's axes titles, legend labels and texts."""
    import lmt_stereotype.figures as figures

    seen, save = {}, figures._save

    def record(fig, path):
        legends = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        texts = [t.get_text() for t in fig.texts]
        seen[Path(path).name] = ([ax.get_title() for ax in fig.axes if ax.get_title()], legends, texts)
        save(fig, path)

    monkeypatch.setattr(figures, "_save", record)
    return seen


def fit_small(stacks: Stacks) -> CNNClassifier:
    model = CNNClassifier(channels=(1,), kernel_sizes=(3,), epochs=5, lr=0.01, seed=0, threads=1)
    return model.fit(stacks.X, stacks.y)


FEW = DEMO.model_copy(update={"explain": varied(DEMO.explain, n_permutations=19, ig_steps=4)})


def test_a_two_class_target_gets_one_panel_per_class_in_every_figure(tmp_path, drawn):
    """Genotypes mixed within cages: every map figure has a WT and a KO panel, in that order."""
    stacks = genotype_stacks("mixed")
    files = explain_model(fit_small(stacks), stacks, FEW, tmp_path, "a test")
    pngs = [f for f in files if f.suffix == ".png"]
    assert len(pngs) == len(drawn) == 6 and all(f.read_bytes().startswith(b"\x89PNG") for f in pngs)
    with np.load(tmp_path / "maps.npz") as maps:
        assert {len(maps[k]) for k in maps.files} == {2}  # one map (or curve) per class
    for name, (titles, legend, texts) in drawn.items():
        if name == "activation_k3.png":  # the channel overview: a column per class
            assert titles == list(GENOTYPES)
        elif name == "time_importance.png":
            assert legend == ["lights off", *GENOTYPES]
        else:  # the class maps: a panel per genotype, in the target's order
            assert titles == list(GENOTYPES), name
            assert "design permutations of the labels (genotype within a cage)" in texts[-1], texts


def test_held_out_explanations_of_a_genotype_per_cage_say_what_the_folds_held_out(tmp_path, drawn):
    stacks = genotype_stacks("per_cage")
    explain_held_out({c: fit_small(stacks) for c in np.unique(stacks.cage)}, stacks, FEW, tmp_path)
    assert [drawn[f"activation_k3_cage{c}.png"][0] for c in range(4)] == [list(GENOTYPES)] * 4
    titles, _, texts = drawn["integrated_gradients.png"]
    assert titles == list(GENOTYPES)
    assert "(genotype across cages)" in texts[-1]
    assert "holds out one cage each of WT and KO together" in texts[-1] and "sexes" not in texts[-1]
    mixed = genotype_stacks("mixed")
    assert "one cage per fold" in held_out_note(mixed) and "sexes" not in held_out_note(mixed)


def test_the_paper_s_classes_keep_the_paper_s_words(tmp_path):
    """Sex across cages and age within a cage, in the spots' rule and the held-out caveat, as before."""
    X, y = only_af_planted()
    ids = np.arange(len(y)).astype(str)
    stacks = Stacks(
        X=X,
        label=np.array(PAPER_CLASSES)[y],
        classes=PAPER_CLASSES,
        target_column="class",
        groups={},
        cage=CAGES,
        recording=ids,
        animal_id=np.ones(len(y), dtype=np.int64),
        sample=ids,
        identity=np.char.add("id-", ids),
        interval_s=180.0,
        start_hour=np.full(len(y), 10.0),
        seconds_per_hour=30.0,
    )
    assert _Explainer(DEMO, stacks, tmp_path).permuted == "sex across cages, age within a cage"
    assert held_out_note(stacks).startswith(
        "Each cage is explained by a model that never saw it; a balanced fold holds out a male and a female cage "
        "together, so each model explains both sexes"
    )


def test_explain_refuses_a_model_trained_for_other_classes(tmp_path):
    from lmt_stereotype.errors import InputError
    from lmt_stereotype.models import save_cnn
    from lmt_stereotype.stages.explain import load_for

    stacks = genotype_stacks("mixed")
    model = CNNClassifier(channels=(2, 2), kernel_sizes=KERNELS, epochs=1, seed=0, threads=1).fit(stacks.X, stacks.y)
    save_cnn(model, stacks.X.shape[1:3], ("KO", "WT"), tmp_path / "final.npz")
    with pytest.raises(InputError, match=r"final.npz.*trained for target classes KO, WT.*genotype \(WT, KO\).*train"):
        load_for(tmp_path / "final.npz", stacks)
    save_cnn(model, stacks.X.shape[1:3], GENOTYPES, tmp_path / "final.npz")
    assert load_for(tmp_path / "final.npz", stacks).n_classes == 2
    with pytest.raises(ValueError, match="scores 2 classes.*class has 4"):
        explain_model(model, clocked_stacks(2, 180.0, 30.0, [10.0] * 2), DEMO, tmp_path / "x", "t")
