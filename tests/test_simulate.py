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
from helpers.mice import adult_females
from helpers.params import DEMO, varied

from lmt_stereotype import simulation
from lmt_stereotype.clock import clock_hour
from lmt_stereotype.config import Params
from lmt_stereotype.errors import InputError
from lmt_stereotype.lmt import LMTDatabase
from lmt_stereotype.manifest import read_manifest, resolve
from lmt_stereotype.schema import ANIMAL_LAYOUTS
from lmt_stereotype.simulation.behaviour import recording_frames
from lmt_stereotype.simulation.cohort import SIMULATED_LAYOUTS, _plan_cohort
from lmt_stereotype.simulation.lmt_writer import _TrackerEvents

TINY = simulation.Profile(interval_s=30.0, n_intervals=6, anonymous_fraction=0.2, data_mask_px=6)
"""3 minutes per recording: enough rows for every quirk, small enough to run in a second."""

FORMAT_TABLES = {"ANIMAL", "DETECTION", "FRAME", "EVENT", "RFIDEVENT"}
FORMAT_INDEXES = {
    "eventstartendIndex",
    "indexeventidIndex",
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


TRACKER_FILE = simulation.FileVariant()


def one_recording(path: Path, variant: simulation.FileVariant = TRACKER_FILE, seed: int = 1) -> Path:
    params = tiny_params()
    mice = adult_females(params)
    simulation.simulate_recording(
        path,
        mice,
        params,
        TINY,
        np.random.default_rng(seed),
        variant=variant,
        truth=path.with_suffix(".parquet"),
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


def test_recording_has_every_table_and_index_of_the_format_in_the_tracker_s_quoted_ddl(tmp_path):
    db = one_recording(tmp_path / "rec.sqlite")
    objects = query(db, "SELECT type, name, sql FROM sqlite_master")
    assert {n for t, n, _ in objects if t == "table"} == FORMAT_TABLES | {"sqlite_sequence"}, "no LOG: not processed"
    assert {n for t, n, _ in objects if t == "index" and not n.startswith("sqlite_")} == FORMAT_INDEXES
    ddl = {n: sql for _, n, sql in objects}
    assert ddl["ANIMAL"].startswith("CREATE TABLE 'ANIMAL' ('ID' INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, 'RFID'")
    assert ddl["eventstartendIndex"] == "CREATE INDEX 'eventstartendIndex' ON 'EVENT'('STARTFRAME', 'ENDFRAME')"
    assert not list(tmp_path.glob("*.tmp")), "written through a temporary file, renamed into place"


def test_the_recording_pc_s_clock_shows_the_start_hour_in_the_room_s_time_zone(tmp_path):
    params = tiny_params()
    params = params.model_copy(update={"room": varied(params.room, timezone="Europe/Paris")})
    path = tmp_path / "rec.sqlite"
    mice = adult_females(params, 1)
    simulation.simulate_recording(path, mice, params, TINY, np.random.default_rng(0), start_hour=11.5)
    with LMTDatabase(path, DEMO.lmt) as lmt:
        assert clock_hour(lmt.start_ms(), "Europe/Paris") == pytest.approx(11.5)


def test_a_file_processed_by_lmt_analysis_has_its_log_table_and_event_metadata(tmp_path):
    db = one_recording(tmp_path / "rec.sqlite", simulation.FileVariant(event_metadata=False, processed=True))
    assert [r[1] for r in query(db, "PRAGMA table_info(LOG)")] == ["id", "process", "version", "date", "tmin", "tmax"]
    assert scalar(db, "SELECT COUNT(*) FROM LOG WHERE process LIKE 'Build Event %'") > 0
    assert "METADATA" in [r[1] for r in query(db, "PRAGMA table_info(EVENT)")], "lmt-analysis adds it"


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
    moved = (
        "SELECT COUNT(*) FROM (SELECT 1 FROM DETECTION WHERE ANIMALID IS NOT NULL"
        " GROUP BY ANIMALID, FRAMENUMBER HAVING COUNT(DISTINCT MASS_X) > 1)"
    )
    assert 0 < scalar(db, moved) < scalar(db, duplicated), "duplicates with the same and with other coordinates"
    decimals = [len(repr(x).split(".")[1]) for (x,) in query(db, "SELECT MASS_X FROM DETECTION LIMIT 2000")]
    assert max(decimals) <= 2, "the tracker rounds coordinates to 2 decimals"
    n_frames = recording_frames(TINY, tiny_params())
    assert n_frames == (TINY.n_intervals + 1) * TINY.interval_s * 30, "a margin of one stack interval"
    first, last, n = query(db, "SELECT MIN(FRAMENUMBER), MAX(FRAMENUMBER), COUNT(*) FROM FRAME")[0]
    assert (first, last) == (1, n_frames) and n < n_frames, "a few frames dropped"
    orphans = "SELECT COUNT(*) FROM DETECTION WHERE FRAMENUMBER NOT IN (SELECT FRAMENUMBER FROM FRAME)"
    assert scalar(db, orphans) == 0, "no detection in a dropped frame"
    ts = np.array([t for (t,) in query(db, "SELECT TIMESTAMP FROM FRAME ORDER BY FRAMENUMBER")])
    assert (np.diff(ts) < 0).sum() in (1, 2), "the clock jumps back once or twice"
    frames = np.array([f for (f,) in query(db, "SELECT FRAMENUMBER FROM DETECTION ORDER BY ID")])
    assert (np.diff(frames) >= 0).all(), "rows in frame order, as the tracker writes them"


def test_an_extra_all_null_animal_and_animals_identified_late(tmp_path):
    db = one_recording(tmp_path / "rec.sqlite", simulation.FileVariant(null_animal=True, late_animals=2))
    assert query(db, "SELECT * FROM ANIMAL WHERE ID = 5") == [(5, None, None, None)]
    assert scalar(db, "SELECT MIN(FRAMENUMBER) FROM DETECTION WHERE ANIMALID IS NULL") == 1, "blobs from frame 1"
    identified = [
        f for (f,) in query(db, "SELECT MIN(FRAMENUMBER) FROM DETECTION WHERE ANIMALID > 0 GROUP BY ANIMALID")
    ]
    assert sum(f >= 100 for f in identified) == 2, "two animals identified only after frame 100"
    with LMTDatabase(db, DEMO.lmt) as lmt:
        assert [a.id for a in lmt.animals()] == [1, 2, 3, 4], "the all-NULL row is no animal"


def test_data_holds_the_tracker_s_xml_with_roi_fields_as_child_elements_and_a_zlib_mask(tmp_path):
    db = one_recording(tmp_path / "rec.sqlite")
    for x, y, data in query(db, "SELECT MASS_X, MASS_Y, DATA FROM DETECTION WHERE ID % 997 = 1"):
        root = ET.fromstring(data)
        assert float(root.find("DATA").get("mass_x")) == pytest.approx(x, abs=0.01)
        assert float(root.find("DATA").get("mass_y")) == pytest.approx(y, abs=0.01)
        assert {"mass_z", "isRearing", "isLookingUp", "isLookingDown", "t"} <= set(root.find("DATA").attrib)
        roi = root.find("ROI")
        assert not roi.attrib and roi.findtext("classname").startswith("plugins.kernel.roi")
        side = int(roi.findtext("boundsW"))
        assert side == int(roi.findtext("boundsH")) == TINY.data_mask_px
        mask = zlib.decompress(bytes(int(h, 16) for h in roi.findtext("boolMaskData").split(":")))
        assert len(mask) == side * side and set(mask) == {0, 1}


FORMAT_LAYOUTS = {
    3: ("ID", "RFID", "NAME"),
    4: ("ID", "RFID", "GENOTYPE", "NAME"),
    5: ("ID", "RFID", "GENOTYPE", "NAME", "IND"),
    7: ("ID", "RFID", "GENOTYPE", "NAME", "AGE", "SEX", "STRAIN"),
    8: ("ID", "RFID", "GENOTYPE", "NAME", "AGE", "SEX", "STRAIN", "SETUP"),
}
"""FORMAT.md's table of ANIMAL layouts (9 columns: the 8 + TREATMENT or IND)."""

LMT_ANALYSIS_SELECT = {
    3: "ID,RFID,NAME",
    4: "ID,RFID,NAME,GENOTYPE",
    5: "ID,RFID,NAME,GENOTYPE,IND",
    7: "ID,RFID,NAME,GENOTYPE,AGE,SEX,STRAIN",
    8: "ID,RFID,NAME,GENOTYPE,AGE,SEX,STRAIN,SETUP",
    9: "ID,RFID,NAME,GENOTYPE,AGE,SEX,STRAIN,SETUP,IND",
}
"""The columns lmt-analysis's animal loader selects for a table of that many columns; it always adds
``FROM ANIMAL ORDER BY GENOTYPE``."""


def assert_lmt_analysis_opens(db: Path) -> None:
    """``db``'s ANIMAL is one of FORMAT.md's layouts and answers lmt-analysis's loader."""
    columns = tuple(r[1] for r in query(db, "PRAGMA table_info(ANIMAL)"))
    n = len(columns)
    assert (
        columns in (FORMAT_LAYOUTS[n],)
        if n != 9
        else columns in ((*FORMAT_LAYOUTS[8], c) for c in ("TREATMENT", "IND"))
    )
    rows = query(db, f"SELECT {LMT_ANALYSIS_SELECT[n]} FROM ANIMAL ORDER BY GENOTYPE")
    assert len(rows) >= 4 and all(len(r) == n for r in rows), db.name


@pytest.mark.parametrize("layout", SIMULATED_LAYOUTS)
def test_every_simulated_animal_layout_is_one_of_format_md_s_and_lmt_analysis_opens_it(tmp_path, layout):
    db = one_recording(tmp_path / "rec.sqlite", simulation.FileVariant(animal_layout=layout))
    assert tuple(r[1] for r in query(db, "PRAGMA table_info(ANIMAL)")) == ANIMAL_LAYOUTS[layout]
    assert_lmt_analysis_opens(db)
    with LMTDatabase(db, DEMO.lmt) as lmt:
        animals = lmt.animals()
    assert [a.id for a in animals] == [1, 2, 3, 4] and {a.genotype for a in animals} == {"WT"}
    assert len({a.rfid for a in animals}) == 4 and all(len(a.rfid) == 12 for a in animals)
    if "SEX" in ANIMAL_LAYOUTS[layout]:
        assert {(a.sex, a.age) for a in animals} == {("F", "adult")}


def test_event_table_with_and_without_metadata(tmp_path):
    with_meta = one_recording(tmp_path / "a.sqlite")
    without = one_recording(tmp_path / "b.sqlite", simulation.FileVariant(event_metadata=False))
    assert "METADATA" in [r[1] for r in query(with_meta, "PRAGMA table_info(EVENT)")]
    assert "METADATA" not in [r[1] for r in query(without, "PRAGMA table_info(EVENT)")]
    assert scalar(without, "SELECT COUNT(*) FROM EVENT WHERE NAME = 'Stop'") > 0
    assert scalar(without, "SELECT COUNT(*) FROM RFIDEVENT") > 0


def test_events_are_what_the_tracker_computes_never_the_planted_stops(tmp_path):
    """Stop: |p(t+3) - p(t-3)| / 7 below 1 px/frame, no minimum duration; Detection: runs of detected frames."""
    db = one_recording(tmp_path / "rec.sqlite")
    names = dict(query(db, "SELECT NAME, COUNT(*) FROM EVENT GROUP BY NAME"))
    assert set(names) == {"Detection", "Stop", "RFID MATCH"} and names["Stop"] > 0
    assert scalar(db, "SELECT COUNT(*) FROM EVENT WHERE DESCRIPTION != ''") == 0, "the tracker's DESCRIPTION is empty"
    assert scalar(db, "SELECT MIN(ENDFRAME - STARTFRAME) FROM EVENT WHERE NAME = 'Stop'") == 0, "1-frame stops exist"
    planted = pd.read_parquet(db.with_suffix(".parquet"))
    tracker = set(query(db, "SELECT IDANIMALA, STARTFRAME, ENDFRAME FROM EVENT WHERE NAME = 'Stop'"))
    assert len(tracker & set(zip(planted.animal_id, planted.start_frame, planted.end_frame))) < len(tracker) / 20
    (animal, start, end), *_ = sorted(tracker, key=lambda e: e[1] - e[2])  # the longest Stop
    rows = query(db, f"SELECT FRAMENUMBER, MIN(MASS_X), MASS_Y FROM DETECTION WHERE ANIMALID = {animal} GROUP BY 1")
    at = {f: (x, y) for f, x, y in rows}
    for t in range(start, end + 1):
        (x0, y0), (x1, y1) = at[t - 3], at[t + 3]
        assert np.hypot(x1 - x0, y1 - y0) / 7 < 1 and t in at
    detections = query(db, f"SELECT STARTFRAME, ENDFRAME FROM EVENT WHERE NAME = 'Detection' AND IDANIMALA = {animal}")
    assert sum(e - s + 1 for s, e in detections) == len(at), "Detection events cover every detected frame once"


@pytest.mark.parametrize("seed", range(5))
def test_the_tracker_s_events_do_not_depend_on_how_frames_are_chunked(seed):
    rng = np.random.default_rng(seed)
    n = 3000
    frames = np.flatnonzero(rng.random(n) > 0.05)  # some frames missing
    x = np.cumsum(rng.normal(0, 0.6, len(frames)) * (rng.random(len(frames)) < 0.3))
    y = np.cumsum(rng.normal(0, 0.6, len(frames)) * (rng.random(len(frames)) < 0.3))

    def events(cuts: list[int]) -> list[tuple[str, int, int]]:
        tracker = _TrackerEvents()
        for f0, f1 in zip([0, *cuts], [*cuts, n]):
            inside = (frames >= f0) & (frames < f1)
            tracker.feed(f0, f1, frames[inside], x[inside], y[inside])
        return sorted(tracker.finish())

    whole = events([])
    assert {name for name, _, _ in whole} == {"Detection", "Stop"}
    for _ in range(5):
        assert events(sorted(set(rng.integers(1, n, rng.integers(1, 30)).tolist()))) == whole


def test_mice_are_slow_in_planted_stops_and_fast_in_between(tmp_path):
    db = one_recording(tmp_path / "rec.sqlite")
    planted = pd.read_parquet(db.with_suffix(".parquet"))
    stops = list(zip(planted.animal_id, planted.start_frame, planted.end_frame))
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
    # a duplicated row with other coordinates (the reader keeps the smallest MASS_X) can jump a centimetre
    assert len(in_stop) > 1000 and np.mean(in_stop >= 5.0) < 0.005 and np.median(in_stop) < 1.0
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


def test_simulation_json_records_the_clock_and_recordings_start_at_their_own_times(cohort):
    """An hour lasts seconds_per_hour; each recording starts at its own start_hour, a whole minute in the
    stack interval before histograms.clock_start (12:00), which FRAME.TIMESTAMP of its first frame tells."""
    truth = json.loads((cohort.parent / "simulation.json").read_text())
    assert truth["clock"]["seconds_per_hour"] == TINY.interval_s and truth["clock"]["lights_on"] == [8, 20]
    starts = [r["start_hour"] for r in truth["recordings"]]
    assert len(set(starts)) == len(starts) and all(11 <= h < 12 for h in starts)  # TINY: 30-s intervals, 1 h
    for rec in truth["recordings"]:
        with LMTDatabase(cohort.parent / rec["recording"], DEMO.lmt) as lmt:
            assert clock_hour(lmt.start_ms(), "UTC") == pytest.approx(rec["start_hour"])
    assert simulation.PROFILES["paper"].interval_s == 3600 and simulation.PROFILES["demo"].interval_s == 30


@pytest.mark.slow
def test_same_seed_same_bytes_other_seed_other_bytes(cohort, tmp_path):
    again = write_tiny_cohort(tmp_path / "again", tiny_params(seed=0)).parent
    other = write_tiny_cohort(tmp_path / "other", tiny_params(seed=1)).parent
    files = sorted(str(p.relative_to(cohort.parent)) for p in cohort.parent.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(again)) for p in again.rglob("*") if p.is_file())
    assert sum(f.startswith("planted_stops/") for f in files) == 4, "the planted stops of every recording"
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


def test_every_file_variant_appears_in_the_default_cohort():
    recordings = _plan_cohort(DEMO)[0]
    assert {r.variant.animal_layout for r in recordings} == set(SIMULATED_LAYOUTS)
    assert {r.variant.event_metadata for r in recordings} == {True, False}
    assert {r.variant.processed for r in recordings} == {True, False}
    assert {r.variant.null_animal for r in recordings} == {True, False}
    assert {r.variant.late_animals for r in recordings} == {0, 1, 2}
    for age in ("juvenile", "adult"):  # no variant tells the age (the class) of a recording
        mine = [r.variant for r in recordings if r.age == age]
        assert {v.processed for v in mine} == {v.null_animal for v in mine} == {True, False}, age
        assert {v.late_animals for v in mine} == {0, 1, 2} and len({v.animal_layout for v in mine}) == 5, age
    assert {r.key_by_rfid for r in recordings if r.age == "adult"} == {True, False}
    assert len({r.start_hour for r in recordings}) > 20 and len({int(r.start_hour) for r in recordings}) == 6


def test_every_file_of_a_simulated_cohort_opens_in_lmt_analysis(cohort):
    for db in sorted(cohort.parent.glob("*.sqlite")):
        assert_lmt_analysis_opens(db)


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
    return dict(query(db, "SELECT ID, GENOTYPE FROM ANIMAL WHERE RFID IS NOT NULL"))  # not the all-NULL row


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
        assert written == genotypes, rec["recording"]
        layouts_with_column += 1
        names = dict(query(db, "SELECT ID, NAME FROM ANIMAL"))
        for m in rec["mice"]:
            by_rfid.setdefault(m["rfid"], set()).add(m["genotype"])
            assert truth["genotype"]["genotypes"][rec["cage"]][names[m["animal_id"]]] == m["genotype"]
    assert layouts_with_column == len(truth["recordings"]), "every layout lmt-analysis opens has GENOTYPE"
    assert len(by_rfid) == 16 and all(len(g) == 1 for g in by_rfid.values()), "the same genotype at both ages"


def test_mixed_housing_writes_the_genotype_to_the_manifest(mixed):
    truth = json.loads((mixed.parent / "simulation.json").read_text())
    manifest = pd.read_csv(mixed, dtype=str, keep_default_na=False)
    assert list(manifest.columns) == ["recording", "animal", "cage", "sex", "age", "genotype"]
    rfids = {(r["recording"], m["animal_id"]): m["rfid"] for r in truth["recordings"] for m in r["mice"]}
    expected = {(r["recording"], m["rfid"]): m["genotype"] for r in truth["recordings"] for m in r["mice"]}
    animal_columns = {r["recording"]: r["animal_layout"] for r in truth["recordings"]}
    for row in manifest.itertuples():
        rfid = row.animal if len(row.animal) == 12 else rfids[(row.recording, int(row.animal))]
        if row.genotype == "":  # the mouse whose labels are left to ANIMAL, which has them
            assert row.sex == row.age == "" and "GENOTYPE" in animal_columns[row.recording]
        else:
            assert row.genotype == expected[(row.recording, rfid)]
    left_to_animal = sum("SEX" in columns for columns in animal_columns.values())  # one mouse per such file
    assert (manifest.genotype == "").sum() == left_to_animal > 0 and (
        manifest.genotype != ""
    ).sum() == 32 - left_to_animal
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
    assert (labelled.groupby("cage").genotype.nunique() == 1).all() and len(labelled) >= len(manifest) - 4
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
        track = simulation.behaviour.plan_track(mouse, params, profile, np.random.default_rng(seed), n_frames, 10.0)
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
