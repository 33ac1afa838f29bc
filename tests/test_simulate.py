"""The simulator writes real-schema LMT databases with the paper's cohort design and known stops."""

from __future__ import annotations

import json
import sqlite3
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.params import DEMO, varied

from lmt_stereotype import simulation
from lmt_stereotype.config import Params
from lmt_stereotype.errors import InputError
from lmt_stereotype.lmt import LMTDatabase
from lmt_stereotype.manifest import read_manifest, resolve
from lmt_stereotype.schema import animal_layout
from lmt_stereotype.simulation.cohort import _plan_cohort

TINY = simulation.Profile(interval_s=30.0, n_intervals=6, anonymous_fraction=0.2, data_mask_px=6)
"""3 minutes per recording: enough rows for every quirk, small enough to run in a second."""

FORMAT_TABLES = {"ANIMAL", "DETECTION", "FRAME", "EVENT", "RFIDEVENT"}
FORMAT_INDEXES = {
    "animalIndex",
    "detectionIndex",
    "detetIdIndex",
    "detframenumberIndex",
    "detectionFastLoadXYIndex",
    "eventIndex",
    "eventStartFrameIndex",
    "eventEndFrameIndex",
}


def tiny_params(seed: int = 0, n_cages: int = 2, **effects: float) -> Params:
    simulation = varied(DEMO.simulate, seed=seed, n_cages=n_cages, effects=varied(DEMO.simulate.effects, **effects))
    histograms = varied(DEMO.histograms, interval_s=TINY.interval_s, n_intervals=TINY.n_intervals)
    return DEMO.model_copy(update={"simulate": simulation, "histograms": histograms})


def write_tiny_cohort(out: Path, params: Params) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(simulation.PROFILES, "demo", TINY)
        return simulation.simulate_cohort(params, out, progress=False)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """manifest.csv of a 2-cage cohort (4 recordings)."""
    return write_tiny_cohort(tmp_path_factory.mktemp("cohort"), tiny_params())


def one_recording(path: Path, *, animal_columns: int = 4, event_metadata: bool = True, seed: int = 1) -> Path:
    params = tiny_params()
    mice = [
        simulation.SimMouse(
            animal_id=i + 1,
            rfid=f"0000041999{i + 1:02d}",
            name=f"m{i + 1}",
            sex="F",
            age="adult",
            fingerprint_cm=(30.0, 20.0),
            site_log_weights=(0.0,) * len(simulation.site_names(params.cage_layout)),
        )
        for i in range(4)
    ]
    simulation.simulate_recording(
        path,
        mice,
        params,
        TINY,
        np.random.default_rng(seed),
        animal_columns=animal_columns,
        event_metadata=event_metadata,
    )
    return path


def query(path: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def scalar(path: Path, sql: str):
    return query(path, sql)[0][0]


# --- one recording: the tracker's schema and every quirk of FORMAT.md ----------------------


def test_recording_has_every_table_and_index_of_the_format(tmp_path):
    db = one_recording(tmp_path / "rec.sqlite")
    objects = query(db, "SELECT type, name FROM sqlite_master")
    assert FORMAT_TABLES <= {n for t, n in objects if t == "table"}
    assert FORMAT_INDEXES <= {n for t, n in objects if t == "index"}
    assert not list(tmp_path.glob("*.tmp")), "written through a temporary file, renamed into place"


def test_recording_has_the_quirks_of_real_files(tmp_path):
    db = one_recording(tmp_path / "rec.sqlite")
    n_rows = scalar(db, "SELECT COUNT(*) FROM DETECTION")
    anonymous = scalar(db, "SELECT COUNT(*) FROM DETECTION WHERE ANIMALID IS NULL")
    assert anonymous / n_rows == pytest.approx(TINY.anonymous_fraction, abs=0.01)
    duplicated = (
        "SELECT COUNT(*) FROM (SELECT 1 FROM DETECTION WHERE ANIMALID IS NOT NULL"
        " GROUP BY ANIMALID, FRAMENUMBER HAVING COUNT(*) > 1)"
    )
    assert scalar(db, duplicated) > 0
    assert scalar(db, "SELECT COUNT(*) FROM DETECTION WHERE MASS_X < 10 AND ANIMALID IS NOT NULL") > 0
    assert scalar(db, "SELECT COUNT(*) FROM DETECTION WHERE FRONT_X = -1") > 0
    assert scalar(db, "SELECT COUNT(*) FROM DETECTION WHERE BACK_X = -1") > 0
    n_frames = round(TINY.n_intervals * TINY.interval_s * 30)
    first, last, n = query(db, "SELECT MIN(FRAMENUMBER), MAX(FRAMENUMBER), COUNT(*) FROM FRAME")[0]
    assert (first, last) == (1, n_frames) and n < n_frames, "a few frames dropped"
    orphans = "SELECT COUNT(*) FROM DETECTION WHERE FRAMENUMBER NOT IN (SELECT FRAMENUMBER FROM FRAME)"
    assert scalar(db, orphans) == 0, "no detection in a dropped frame"
    ts = np.array([t for (t,) in query(db, "SELECT TIMESTAMP FROM FRAME ORDER BY FRAMENUMBER")])
    assert (np.diff(ts) < 0).sum() in (1, 2), "the clock jumps back once or twice"
    frames = np.array([f for (f,) in query(db, "SELECT FRAMENUMBER FROM DETECTION ORDER BY ID")])
    assert (np.diff(frames) >= 0).all(), "rows in frame order, as the tracker writes them"


def test_data_holds_xml_with_a_zlib_mask(tmp_path):
    db = one_recording(tmp_path / "rec.sqlite")
    for x, y, data in query(db, "SELECT MASS_X, MASS_Y, DATA FROM DETECTION WHERE ID % 997 = 1"):
        root = ET.fromstring(data)
        assert float(root.find("DATA").get("mass_x")) == pytest.approx(x, abs=0.01)
        assert float(root.find("DATA").get("mass_y")) == pytest.approx(y, abs=0.01)
        roi = root.find("ROI")
        side = int(roi.findtext("boundsW"))
        assert side == int(roi.findtext("boundsH")) == TINY.data_mask_px
        mask = zlib.decompress(bytes(int(h, 16) for h in roi.findtext("boolMaskData").split(":")))
        assert len(mask) == side * side and set(mask) == {0, 1}


@pytest.mark.parametrize("k", range(3, 10))
def test_animal_table_takes_the_first_k_columns(tmp_path, k):
    db = one_recording(tmp_path / "rec.sqlite", animal_columns=k)
    columns = [r[1] for r in query(db, "PRAGMA table_info(ANIMAL)")]
    expected = list(animal_layout(k))  # the tracker's own order for 4
    assert columns == expected
    with LMTDatabase(db, DEMO.lmt) as lmt:
        animals = lmt.animals()
    assert [a.id for a in animals] == [1, 2, 3, 4]
    assert len({a.rfid for a in animals}) == 4 and all(len(a.rfid) == 12 for a in animals)
    if k >= 7:
        assert {(a.sex, a.age) for a in animals} == {("F", "adult")}


def test_event_table_with_and_without_metadata(tmp_path):
    with_meta = one_recording(tmp_path / "a.sqlite", event_metadata=True)
    without = one_recording(tmp_path / "b.sqlite", event_metadata=False)
    assert "METADATA" in [r[1] for r in query(with_meta, "PRAGMA table_info(EVENT)")]
    assert "METADATA" not in [r[1] for r in query(without, "PRAGMA table_info(EVENT)")]
    assert scalar(without, "SELECT COUNT(*) FROM EVENT WHERE NAME = 'Stop'") > 0
    assert scalar(without, "SELECT COUNT(*) FROM RFIDEVENT") > 0


def test_mice_are_slow_in_planted_stops_and_fast_in_between(tmp_path):
    db = one_recording(tmp_path / "rec.sqlite")
    stops = query(db, "SELECT IDANIMALA, STARTFRAME, ENDFRAME FROM EVENT WHERE NAME = 'Stop'")
    in_stop, between = [], []
    with LMTDatabase(db, DEMO.lmt) as lmt:
        for animal in lmt.animals():
            chunks = list(lmt.iter_track(animal.id))
            frame = np.concatenate([c.frame for c in chunks])
            x = np.concatenate([c.x_cm for c in chunks])
            y = np.concatenate([c.y_cm for c in chunks])
            at = {int(f): i for i, f in enumerate(frame)}
            # centred difference over 7 frames (t-3 .. t+3), where both ends were detected
            t = np.array([f for f in frame if f - 3 in at and f + 3 in at])
            before, after = np.array([at[f - 3] for f in t]), np.array([at[f + 3] for f in t])
            speed = np.hypot(x[after] - x[before], y[after] - y[before]) / (6 / 30)
            planted = np.zeros(len(t), dtype=bool)
            near = np.zeros(len(t), dtype=bool)
            for a, s, e in stops:
                if a == animal.id:
                    planted |= (t >= s + 3) & (t <= e - 3)
                    near |= (t >= s - 30) & (t <= e + 30)
            in_stop.append(speed[planted])
            between.append(speed[~near])
    in_stop, between = np.concatenate(in_stop), np.concatenate(between)
    assert len(in_stop) > 1000 and in_stop.max() < 5.0
    assert np.median(between) > 10.0


# --- the cohort ------------------------------------------------------------------------


def test_manifest_follows_the_cohort_design(cohort):
    manifest = pd.read_csv(cohort, dtype=str, keep_default_na=False)
    assert list(manifest.columns) == ["recording", "animal", "cage", "sex", "age"]
    assert len(manifest) == 8 * 2
    assert (manifest.groupby("recording").size() == 4).all()
    labelled = manifest[manifest.sex != ""]
    assert (labelled.groupby("cage").sex.nunique() == 1).all(), "same-sex cages"
    assert sorted(labelled.groupby("cage").sex.first()) == ["F", "M"], "half male, half female"
    assert (manifest.groupby("cage").recording.nunique() == 2).all()
    assert (labelled.groupby("cage").age.agg(set) == {"juvenile", "adult"}).all()
    assert {f"{c}_{a}.sqlite" for c in manifest.cage for a in ("juvenile", "adult")} == set(manifest.recording)
    assert manifest.animal.str.len().max() == 12 and manifest.animal.str.len().min() == 1, "by ID and by RFID"


def test_manifest_resolves_against_the_recordings(cohort):
    resolved = resolve(read_manifest(cohort), cohort, DEMO.lmt)
    truth = json.loads((cohort.parent / "simulation.json").read_text())
    classes = {(r["recording"], m["animal_id"]): m["class"] for r in truth["recordings"] for m in r["mice"]}
    labels = [("A" if age == "adult" else "J") + sex for sex, age in zip(resolved.sex, resolved.age)]
    assert dict(zip(zip(resolved.recording, resolved.animal_id), labels)) == classes
    by_rfid = resolved.groupby("rfid").recording.nunique()
    assert (by_rfid == 2).all(), "the same mice (RFIDs) at both ages"


def test_simulation_json_describes_the_effects(cohort):
    truth = json.loads((cohort.parent / "simulation.json").read_text())
    assert truth["interval_s"] == TINY.interval_s and truth["n_intervals"] == TINY.n_intervals
    assert truth["effects"]["female_house"]["site_weight_multiplier"] == {"AM": 1, "JM": 1, "AF": 3, "JF": 1}
    assert truth["effects"]["male_lower_border"]["site_weight_multiplier"]["JM"] == 2.0
    assert truth["effects"]["juvenile_centre"]["region_cm"]["r"] > 0
    assert set(truth["cage_fingerprints_cm"]) == {"cage01", "cage02"}


def test_simulation_json_records_the_clock(cohort):
    """Interval k is hour (start_hour + k) % 24, seconds_per_hour long; lights on from 8 to 20."""
    truth = json.loads((cohort.parent / "simulation.json").read_text())
    assert truth["clock"] == {"start_hour": 10, "seconds_per_hour": TINY.interval_s, "lights_on": [8, 20]}
    assert simulation.PROFILES["paper"].interval_s == 3600 and simulation.PROFILES["demo"].interval_s == 30


@pytest.mark.slow
def test_same_seed_same_bytes_other_seed_other_bytes(cohort, tmp_path):
    again = write_tiny_cohort(tmp_path / "again", tiny_params(seed=0)).parent
    other = write_tiny_cohort(tmp_path / "other", tiny_params(seed=1)).parent
    files = sorted(p.name for p in cohort.parent.iterdir())
    assert files == sorted(p.name for p in again.iterdir())
    for name in files:
        assert (cohort.parent / name).read_bytes() == (again / name).read_bytes(), name
    for name in [f for f in files if f.endswith(".sqlite")]:
        assert (cohort.parent / name).read_bytes() != (other / name).read_bytes(), name


@pytest.mark.slow
def test_cages_are_independent_of_each_other(cohort, tmp_path):
    """Adding cages leaves the first ones as they were (each cage has its own random stream)."""
    bigger = write_tiny_cohort(tmp_path / "bigger", tiny_params(n_cages=4)).parent
    assert (bigger / "cage01_adult.sqlite").read_bytes() == (cohort.parent / "cage01_adult.sqlite").read_bytes()


def test_strength_zero_turns_every_effect_off():
    multipliers = simulation.class_site_multipliers(tiny_params(strength=0.0))
    assert all((m == 1).all() for m in multipliers.values())
    planted = simulation.class_site_multipliers(tiny_params())
    names = simulation.site_names(tiny_params().cage_layout)
    centre = names.index("centre")
    assert planted["AM"][centre] < planted["JM"][centre] < planted["JF"][centre]


def test_every_animal_and_event_variant_appears_in_the_default_cohort():
    recordings = _plan_cohort(DEMO)[0]
    assert {r.animal_columns for r in recordings} == set(range(3, 10))
    assert {r.event_metadata for r in recordings} == {True, False}
    assert {r.key_by_rfid for r in recordings if r.age == "adult"} == {True, False}


@pytest.mark.slow
def test_write_simulated_cohort_skips_an_up_to_date_folder(cohort, tmp_path):
    out = tmp_path / "raw"
    params = tiny_params()
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(simulation.PROFILES, "demo", TINY)
        assert simulation.write_simulated_cohort(params, out, progress=False) is True
        before = (out / "cage01_adult.sqlite").stat().st_mtime_ns
        assert simulation.write_simulated_cohort(params, out, progress=False) is False
        assert (out / "cage01_adult.sqlite").stat().st_mtime_ns == before
        assert simulation.write_simulated_cohort(tiny_params(seed=3), out, progress=False) is True


@pytest.mark.slow
def test_write_simulated_cohort_rewrites_a_simulation_json_without_the_clock(tmp_path):
    out = tmp_path / "raw"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(simulation.PROFILES, "demo", TINY)
        assert simulation.write_simulated_cohort(tiny_params(), out, progress=False) is True
        old = json.loads((out / "simulation.json").read_text())
        del old["clock"]  # as written before the clock was recorded
        (out / "simulation.json").write_text(json.dumps(old))
        assert simulation.write_simulated_cohort(tiny_params(), out, progress=False) is True
        assert "clock" in json.loads((out / "simulation.json").read_text())


def test_write_simulated_cohort_refuses_a_folder_of_real_recordings(tmp_path):
    (tmp_path / "real.sqlite").write_bytes(b"")
    with pytest.raises(InputError, match="simulation.json"):
        simulation.write_simulated_cohort(tiny_params(), tmp_path, progress=False)


# --- a planted genotype ----------------------------------------------------------------


def genotype_params(housing: str, strength: float = 0.0, n_cages: int = 2, seed: int = 0) -> Params:
    params = tiny_params(seed=seed, n_cages=n_cages)
    genotype = varied(params.simulate.genotype, housing=housing, strength=strength)
    return params.model_copy(update={"simulate": varied(params.simulate, genotype=genotype)})


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """manifest.csv of a 4-cage cohort (every ANIMAL layout) of mixed genotype, KO mice at the upper feeder x3."""
    return write_tiny_cohort(tmp_path_factory.mktemp("mixed"), genotype_params("mixed", strength=2.0, n_cages=4))


def animal_genotypes(db: Path) -> dict[int, str] | None:
    """ANIMAL.ID -> GENOTYPE, None if the file's ANIMAL layout has no GENOTYPE."""
    if "GENOTYPE" not in [r[1] for r in query(db, "PRAGMA table_info(ANIMAL)")]:
        return None
    return dict(query(db, "SELECT ID, GENOTYPE FROM ANIMAL"))


def test_mixed_housing_has_2_wt_and_2_ko_mice_per_cage_for_life(mixed):
    truth = json.loads((mixed.parent / "simulation.json").read_text())
    assert truth["genotype"]["housing"] == "mixed" and truth["genotype"]["site"] == "feeder1"
    assert truth["genotype"]["site_weight_multiplier"] == {"WT": 1.0, "KO": 3.0}
    assert truth["genotype"]["region_cm"] == {"shape": "gauss", "x": 46.0, "y": 12.0, "sd": 1.5, "base_weight": 1.5}
    for cage, mice in truth["genotype"]["genotypes"].items():
        assert sorted(mice.values()) == ["KO", "KO", "WT", "WT"], cage
    by_rfid: dict[str, set[str]] = {}
    layouts_with_column = 0
    for rec in truth["recordings"]:
        db = mixed.parent / rec["recording"]
        genotypes = {m["animal_id"]: m["genotype"] for m in rec["mice"]}
        assert sorted(genotypes.values()) == ["KO", "KO", "WT", "WT"]
        written = animal_genotypes(db)
        assert (written is None) == ("GENOTYPE" not in animal_layout(rec["animal_columns"]))
        if written is not None:
            assert written == genotypes, rec["recording"]
            layouts_with_column += 1
        names = dict(query(db, "SELECT ID, NAME FROM ANIMAL"))
        for m in rec["mice"]:
            by_rfid.setdefault(m["rfid"], set()).add(m["genotype"])
            assert truth["genotype"]["genotypes"][rec["cage"]][names[m["animal_id"]]] == m["genotype"]
    assert 0 < layouts_with_column < len(truth["recordings"]), "files with and without ANIMAL.GENOTYPE"
    assert len(by_rfid) == 16 and all(len(g) == 1 for g in by_rfid.values()), "the same genotype at both ages"


def test_mixed_housing_writes_the_genotype_to_the_manifest(mixed):
    truth = json.loads((mixed.parent / "simulation.json").read_text())
    manifest = pd.read_csv(mixed, dtype=str, keep_default_na=False)
    assert list(manifest.columns) == ["recording", "animal", "cage", "sex", "age", "genotype"]
    rfids = {(r["recording"], m["animal_id"]): m["rfid"] for r in truth["recordings"] for m in r["mice"]}
    expected = {(r["recording"], m["rfid"]): m["genotype"] for r in truth["recordings"] for m in r["mice"]}
    animal_columns = {r["recording"]: r["animal_columns"] for r in truth["recordings"]}
    for row in manifest.itertuples():
        rfid = row.animal if len(row.animal) == 12 else rfids[(row.recording, int(row.animal))]
        if row.genotype == "":  # the mouse whose labels are left to ANIMAL, which has them
            assert row.sex == row.age == "" and "GENOTYPE" in animal_layout(animal_columns[row.recording])
        else:
            assert row.genotype == expected[(row.recording, rfid)]
    assert (manifest.genotype == "").sum() == 3 and (manifest.genotype != "").sum() == 8 * 4 - 3
    resolved = resolve(read_manifest(mixed), mixed, DEMO.lmt)
    assert dict(zip(zip(resolved.recording, resolved.rfid), resolved.genotype)) == expected, "blanks from ANIMAL"


def test_mixed_housing_draws_the_genotypes_per_cage():
    recordings = _plan_cohort(genotype_params("mixed", n_cages=12))[0]
    assert all(sorted(m.genotype for m in r.mice) == ["KO", "KO", "WT", "WT"] for r in recordings)
    ko = {r.cage: frozenset(m.name for m in r.mice if m.genotype == "KO") for r in recordings}
    assert len(set(ko.values())) > 1, "not the same mice in every cage"
    other_seed = {
        r.cage: frozenset(m.name for m in r.mice if m.genotype == "KO")
        for r in _plan_cohort(genotype_params("mixed", n_cages=12, seed=1))[0]
    }
    assert other_seed != ko


@pytest.mark.parametrize("n_cages", [4, 6, 7])
def test_per_cage_housing_gives_each_cage_one_genotype_and_each_sex_both(n_cages):
    recordings = _plan_cohort(genotype_params("per_cage", n_cages=n_cages))[0]
    genotype = {}
    for r in recordings:
        assert len({m.genotype for m in r.mice}) == 1, r.cage
        genotype.setdefault(r.cage, set()).add(r.mice[0].genotype)
    assert all(len(g) == 1 for g in genotype.values()), "the same genotype at both ages"
    sex = {r.cage: r.mice[0].sex for r in recordings}
    for s in ("M", "F"):
        cages = [c for c in genotype if sex[c] == s]
        ko = sum(genotype[c] == {"KO"} for c in cages)
        assert ko == len(cages) // 2 and len(cages) - ko == (len(cages) + 1) // 2, "WT has the extra cage"


def test_per_cage_housing_in_the_manifest_and_simulation_json():
    params = genotype_params("per_cage", strength=1.0, n_cages=4)
    plans, fingerprints = _plan_cohort(params)
    manifest = simulation.cohort._manifest(plans, genotype=True)
    labelled = manifest[manifest.genotype != ""]  # but the mice whose labels are left to ANIMAL
    assert (labelled.groupby("cage").genotype.nunique() == 1).all() and len(labelled) > len(manifest) - 4
    truth = simulation.cohort._description(params, "demo", plans, fingerprints)
    cages = truth["genotype"]["genotypes"]
    assert all(len(set(mice.values())) == 1 for mice in cages.values())
    assert sorted(next(iter(mice.values())) for mice in cages.values()) == ["KO", "KO", "WT", "WT"]


def test_housing_none_plants_no_genotype(cohort):
    assert all(m.genotype == "WT" for r in _plan_cohort(DEMO)[0] for m in r.mice), "ANIMAL.GENOTYPE WT, as before"
    assert "genotype" not in pd.read_csv(cohort, dtype=str).columns
    truth = json.loads((cohort.parent / "simulation.json").read_text())
    assert truth["genotype"]["housing"] == "none" and "genotypes" not in truth["genotype"]
    assert all("genotype" not in m for r in truth["recordings"] for m in r["mice"])
    for rec in truth["recordings"]:
        written = animal_genotypes(cohort.parent / rec["recording"])
        assert written is None or set(written.values()) == {"WT"}


@pytest.mark.slow
def test_genotype_draws_leave_every_other_draw_as_it_was(cohort, tmp_path):
    """Mixed housing at strength 0 differs from no genotype in ANIMAL.GENOTYPE alone."""
    planted = write_tiny_cohort(tmp_path / "planted", genotype_params("mixed", strength=0.0)).parent
    for db in sorted(cohort.parent.glob("*.sqlite")):
        for table in ("DETECTION", "FRAME", "EVENT", "RFIDEVENT"):
            sql = f"SELECT * FROM {table} ORDER BY rowid"
            assert query(db, sql) == query(planted / db.name, sql), (db.name, table)
        assert query(db, "SELECT ID, RFID FROM ANIMAL") == query(planted / db.name, "SELECT ID, RFID FROM ANIMAL")


def upper_feeder_share(params: Params, sex: str, age: str, genotype: str, n_mice: int = 8) -> float:
    """Share of the planted stops (the simulation's ground truth) at the upper feeder, over ``n_mice`` mice."""
    profile = simulation.PROFILES["demo"]
    names = simulation.site_names(params.cage_layout)
    n_frames = round(profile.n_intervals * profile.interval_s * params.lmt.fps)
    at_feeder = total = 0
    for seed in range(n_mice):
        mouse = simulation.SimMouse(
            animal_id=1,
            rfid="000004199901",
            name="m1",
            sex=sex,
            age=age,
            fingerprint_cm=(30.0, 30.0),
            site_log_weights=(0.0,) * len(names),
            genotype=genotype,
        )
        track = simulation.behaviour.plan_track(mouse, params, profile, np.random.default_rng(seed), n_frames)
        stops = track.seg.site[track.seg.kind == simulation.behaviour.STOP]
        at_feeder += int((stops == names.index(simulation.upper_feeder(params.cage_layout))).sum())
        total += len(stops)
    return at_feeder / total


@pytest.mark.parametrize(("sex", "age"), [("M", "adult"), ("F", "juvenile")])
def test_ko_mice_stop_more_often_at_the_upper_feeder(sex, age):
    params = genotype_params("mixed", strength=2.0)
    wt, ko = (upper_feeder_share(params, sex, age, g) for g in ("WT", "KO"))
    assert ko > 1.8 * wt, (wt, ko)
    off = genotype_params("mixed", strength=0.0)
    assert upper_feeder_share(off, sex, age, "KO") == upper_feeder_share(off, sex, age, "WT") == pytest.approx(wt)


def test_genotype_effect_is_the_same_in_every_class():
    params = genotype_params("per_cage", strength=0.5)
    names = simulation.site_names(params.cage_layout)
    feeder = names.index(simulation.upper_feeder(params.cage_layout))
    assert simulation.upper_feeder(params.cage_layout) == "feeder1"  # (46, 12), above the other feeder
    multipliers = simulation.genotype_site_multipliers(params)
    assert (multipliers["WT"] == 1).all()
    assert multipliers["KO"][feeder] == 1.5 and np.delete(multipliers["KO"], feeder).tolist() == [1.0] * (
        len(names) - 1
    )
    assert all(m[feeder] == 1 for m in simulation.class_site_multipliers(params).values()), "no class effect there"
    assert all((m == 1).all() for m in simulation.genotype_site_multipliers(genotype_params("none", 0.5)).values())
