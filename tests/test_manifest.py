"""The manifest names each mouse-recording's database, animal and cage, and any labels (sex, age, genotype ...)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.lmt_files import GEOMETRY, track, write_lmt
from helpers.params import DEMO, varied

from lmt_stereotype.errors import InputError
from lmt_stereotype.histograms import labelled_samples
from lmt_stereotype.lmt import LMTDatabase
from lmt_stereotype.manifest import SAMPLE_COLUMNS, cohort_samples, read_manifest, resolve

COLUMNS = ("ID", "RFID", "NAME", "GENOTYPE", "IND", "AGE", "SEX", "TREATMENT")


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    x, y = track([("stay", 2, 0, 0)])
    tracks = {i: (np.arange(len(x)), x, y) for i in (1, 2)}
    values = {
        1: {"SEX": "female", "AGE": "adult", "GENOTYPE": "KO", "TREATMENT": "drug"},
        2: {"SEX": "", "AGE": "", "GENOTYPE": "", "TREATMENT": ""},
    }
    write_lmt(tmp_path / "rec.sqlite", tracks, animal_columns=COLUMNS, animal_values=values)
    return tmp_path


def write(folder: Path, text: str, header: str = "recording,animal,cage,sex,age") -> Path:
    path = folder / "manifest.csv"
    path.write_text(f"{header}\n{text}")
    return path


def samples_of(path: Path) -> pd.DataFrame:
    """The sample table ``stops`` writes for this manifest of one recording, ``rec.sqlite``."""
    with LMTDatabase(path.parent / "rec.sqlite", GEOMETRY) as db:
        summary = pd.DataFrame({"recording_id": ["rec"], "identity": [db.identity()], "start_ms": [db.start_ms()]})
    return cohort_samples(path, summary, GEOMETRY, "Europe/Paris")


def test_animal_by_id_or_rfid_and_gaps_filled_from_animal(cohort):
    path = write(cohort, "rec.sqlite,1,c1,,\nrec.sqlite,000004100002,c1,M,juvenile\n")
    df = resolve(read_manifest(path), path, GEOMETRY)
    assert df["animal_id"].tolist() == [1, 2]
    assert df["sex"].tolist() == ["F", "M"] and df["age"].tolist() == ["adult", "juvenile"]
    assert df["genotype"].tolist() == ["KO", None] and df["treatment"].tolist() == ["drug", None]  # from ANIMAL
    assert df["manifest_row"].tolist() == [2, 3]  # as a spreadsheet numbers them
    assert df["sample"].tolist() == ["rec:1", "rec:2"]


def test_only_recording_animal_and_cage_are_required_and_other_columns_are_kept(cohort):
    path = write(cohort, "rec.sqlite,1,c1,3\nrec.sqlite,2,c1,1\n", header="recording,animal,cage,rank")
    samples = samples_of(path)
    assert list(samples.columns) == [*SAMPLE_COLUMNS, "rank"]  # the sample table's columns, then the manifest's
    assert "label" not in samples.columns and "class" not in samples.columns  # the target labels, in histograms
    assert samples["sex"].tolist() == ["F", ""] and samples["age"].tolist() == ["adult", ""]  # "": unknown
    assert samples["genotype"].tolist() == ["KO", ""] and samples["strain"].tolist() == ["", ""]
    assert samples["rank"].tolist() == ["3", "1"]


@pytest.mark.parametrize(
    "rows, message",
    [
        ("rec.sqlite,1,c1,M,adult\n", "row 2: sex M contradicts ANIMAL.SEX F"),
        ("rec.sqlite,7,c1,F,adult\n", "row 2: animal '7' is not"),
        ("rec.sqlite,2,c1,X,adult\n", "row 2: unknown sex 'X'"),
        ("rec.sqlite,2,c1,F,old\n", "row 2: unknown age 'old'"),
        ("rec.sqlite,2,c1,F,adult\nrec.sqlite,2,c1,F,adult\n", "rows 2, 3: the same animal"),
        ("rec.sqlite,1,c1,F,adult\nrec.sqlite,000004100001,c1,F,adult\n", "rows 2, 3: name the same animal"),
        ("rec.sqlite,,c1,F,adult\n", "row 2: empty animal"),
        ("missing.sqlite,1,c1,F,adult\n", "recording not found"),
    ],
)
def test_bad_manifest_rows_are_named(cohort, rows, message):
    path = write(cohort, rows)
    with pytest.raises(InputError) as err:
        resolve(read_manifest(path), path, GEOMETRY)
    assert message in str(err.value)


def test_any_grouping_column_that_contradicts_animal_is_named(cohort):
    path = write(cohort, "rec.sqlite,1,c1,WT\n", header="recording,animal,cage,genotype")
    with pytest.raises(InputError, match="row 2: genotype WT contradicts ANIMAL.GENOTYPE KO"):
        resolve(read_manifest(path), path, GEOMETRY)
    path = write(cohort, "rec.sqlite,1,c1,KO,drug\n", header="recording,animal,cage,genotype,treatment")
    assert resolve(read_manifest(path), path, GEOMETRY)["genotype"].tolist() == ["KO"]  # agreeing is fine


@pytest.mark.parametrize("column", ["class", "label", "sample", "recording_id", "animal_id"])
def test_a_column_the_tool_makes_is_refused_in_a_manifest(cohort, column):
    path = write(cohort, "rec.sqlite,1,c1,x\n", header=f"recording,animal,cage,{column}")
    with pytest.raises(InputError, match=f"column.s. {column} are made by lmt-stereotype; rename"):
        read_manifest(path)


def test_a_label_the_target_needs_and_neither_gives_is_named_with_its_row(cohort):
    """Animal 2 has no sex in the manifest or ANIMAL: an error for the paper's classes or sex, none for age."""
    path = write(cohort, "rec.sqlite,1,c1,,\nrec.sqlite,2,c1,,juvenile\n")
    samples = samples_of(path)  # resolving leaves the gap: only the target says whether it matters
    for column in ("class", "sex"):
        with pytest.raises(InputError, match="row 3: no sex for animal 2 of rec.sqlite"):
            labelled_samples(samples, varied(DEMO.target, column=column), path)
    kept, target, dropped = labelled_samples(samples, varied(DEMO.target, column="age"), path)
    assert (len(kept), target.classes, dropped) == (2, ("adult", "juvenile"), 0)


def test_missing_column_is_named(tmp_path):
    path = tmp_path / "manifest.csv"
    path.write_text("recording,animal,sex,age\nrec.sqlite,1,F,adult\n")
    with pytest.raises(InputError, match="lacks column.s. cage"):
        read_manifest(path)
