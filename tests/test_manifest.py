"""The manifest names each mouse-recording's database, animal, cage, sex and age."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.lmt_files import GEOMETRY, track, write_lmt

from lmt_stereotype.errors import InputError
from lmt_stereotype.manifest import read_manifest, resolve

COLUMNS = ("ID", "RFID", "NAME", "GENOTYPE", "IND", "AGE", "SEX")


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    x, y = track([("stay", 2, 0, 0)])
    tracks = {i: (np.arange(len(x)), x, y) for i in (1, 2)}
    values = {1: {"SEX": "female", "AGE": "adult"}, 2: {"SEX": "", "AGE": ""}}
    write_lmt(tmp_path / "rec.sqlite", tracks, animal_columns=COLUMNS, animal_values=values)
    return tmp_path


def write(folder: Path, text: str) -> Path:
    path = folder / "manifest.csv"
    path.write_text("recording,animal,cage,sex,age\n" + text)
    return path


def test_animal_by_id_or_rfid_and_gaps_filled_from_animal(cohort):
    path = write(cohort, "rec.sqlite,1,c1,,\nrec.sqlite,000004100002,c1,M,juvenile\n")
    df = resolve(read_manifest(path), path, GEOMETRY)
    assert df["animal_id"].tolist() == [1, 2]
    assert df["label"].tolist() == ["AF", "JM"]
    assert df["manifest_row"].tolist() == [2, 3]  # as a spreadsheet numbers them
    assert df["sample"].tolist() == ["rec:1", "rec:2"]


@pytest.mark.parametrize(
    "rows, message",
    [
        ("rec.sqlite,1,c1,M,adult\n", "row 2: sex M contradicts ANIMAL.SEX F"),
        ("rec.sqlite,2,c1,,adult\n", "row 2: no sex for animal 2"),
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


def test_missing_column_is_named(tmp_path):
    path = tmp_path / "manifest.csv"
    path.write_text("recording,animal,sex,age\nrec.sqlite,1,F,adult\n")
    with pytest.raises(InputError, match="lacks column.s. cage"):
        read_manifest(path)
