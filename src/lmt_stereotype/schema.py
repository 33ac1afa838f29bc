"""The LMT database schema: the tables the tracker creates, and the variants real files show.

One source for the reader (:mod:`lmt_stereotype.lmt`), the simulator
(:mod:`lmt_stereotype.simulation`) and the tests that build databases by hand. The
facts are in ``shared/lmt/FORMAT.md``; this module only writes them down as SQL.

- :data:`SCHEMA`: the five tables as the tracker creates them today (ANIMAL with the
  tracker's 4 columns, EVENT with METADATA).
- :data:`INDEXES`: the tracker's indexes, built after the rows are in;
  :data:`COVERING_INDEX` among them is the one the reader reads tracks through.
- ANIMAL variants with 3 to 9 columns: :func:`animal_layout` (the layouts the simulator
  writes, from :data:`ANIMAL_COLUMNS`), :func:`animal_table` (the DDL for any layout).
- :data:`EVENT_WITHOUT_METADATA`: EVENT as older files have it.
- :func:`create_tables`: the schema with a chosen ANIMAL layout and EVENT variant.

The DDL is written to each file's ``sqlite_master`` verbatim, so the simulator's bytes
depend on every character here: change it only together with ``SIMULATOR_VERSION``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

SCHEMA = """
CREATE TABLE ANIMAL (ID INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, RFID TEXT, GENOTYPE TEXT, NAME TEXT);
CREATE TABLE DETECTION (ID INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, FRAMENUMBER INTEGER, ANIMALID INTEGER,
  MASS_X REAL, MASS_Y REAL, MASS_Z REAL, FRONT_X REAL, FRONT_Y REAL, FRONT_Z REAL,
  BACK_X REAL, BACK_Y REAL, BACK_Z REAL, REARING INTEGER, LOOK_UP INTEGER, LOOK_DOWN INTEGER,
  DATA TEXT NOT NULL,
  FOREIGN KEY(ANIMALID) REFERENCES ANIMAL(ID), FOREIGN KEY(FRAMENUMBER) REFERENCES FRAME(FRAMENUMBER));
CREATE TABLE FRAME (FRAMENUMBER INTEGER NOT NULL UNIQUE, TIMESTAMP INTEGER, NUMPARTICLE INTEGER, PAUSED INTEGER,
  TEMPERATURE REAL, HUMIDITY REAL, SOUND REAL, LIGHTVISIBLE REAL, LIGHTVISIBLEANDIR REAL, PRIMARY KEY(FRAMENUMBER));
CREATE TABLE EVENT (ID INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, NAME TEXT, DESCRIPTION TEXT, STARTFRAME INTEGER,
  ENDFRAME INTEGER, IDANIMALA INTEGER, IDANIMALB INTEGER, IDANIMALC INTEGER, IDANIMALD INTEGER, METADATA TEXT);
CREATE TABLE RFIDEVENT (ID INTEGER PRIMARY KEY AUTOINCREMENT, RFID TEXT, TIME INTEGER, X INTEGER, Y INTEGER);
"""
"""Tables exactly as the LMT tracker creates them (FORMAT.md)."""

INDEXES = """
CREATE INDEX animalIndex ON ANIMAL(ID);
CREATE INDEX detectionIndex ON DETECTION(ID, FRAMENUMBER);
CREATE INDEX detetIdIndex ON DETECTION(ID);
CREATE INDEX detframenumberIndex ON DETECTION(FRAMENUMBER);
CREATE INDEX detectionFastLoadXYIndex ON DETECTION(ANIMALID, FRAMENUMBER, MASS_X, MASS_Y);
CREATE INDEX eventIndex ON EVENT(ID, STARTFRAME, ENDFRAME);
CREATE INDEX eventStartFrameIndex ON EVENT(STARTFRAME);
CREATE INDEX eventEndFrameIndex ON EVENT(ENDFRAME);
"""
"""The tracker's indexes; the reader relies on :data:`COVERING_INDEX` when present."""

COVERING_INDEX = "detectionFastLoadXYIndex"
"""Covers (ANIMALID, FRAMENUMBER, MASS_X, MASS_Y): tracks are read from it without touching DATA."""

TRACKER_ANIMAL_COLUMNS = ("ID", "RFID", "GENOTYPE", "NAME")
"""ANIMAL as the tracker creates it (in :data:`SCHEMA`)."""

ANIMAL_COLUMNS = ("ID", "RFID", "NAME", "GENOTYPE", "IND", "AGE", "SEX", "STRAIN", "SETUP")
"""ANIMAL variants take the first k of these; k=4 is the tracker's own (ID, RFID, GENOTYPE, NAME)."""

EVENT_WITHOUT_METADATA = (
    "CREATE TABLE EVENT (ID INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, NAME TEXT, DESCRIPTION TEXT,"
    " STARTFRAME INTEGER, ENDFRAME INTEGER, IDANIMALA INTEGER, IDANIMALB INTEGER, IDANIMALC INTEGER,"
    " IDANIMALD INTEGER)"
)
"""EVENT as older files have it: the tracker inserts events without METADATA."""


def animal_layout(n_columns: int) -> tuple[str, ...]:
    """The ANIMAL columns of a ``n_columns``-column file (3..9): the first k of :data:`ANIMAL_COLUMNS`,
    the tracker's own order for 4."""
    if not 3 <= n_columns <= len(ANIMAL_COLUMNS):
        raise ValueError(f"animal_columns must be 3..{len(ANIMAL_COLUMNS)}, not {n_columns}")
    return TRACKER_ANIMAL_COLUMNS if n_columns == 4 else ANIMAL_COLUMNS[:n_columns]


ANIMAL_LAYOUTS = tuple(animal_layout(k) for k in range(3, len(ANIMAL_COLUMNS) + 1))
"""Every ANIMAL layout, 3 to 9 columns."""


def animal_table(columns: Sequence[str]) -> str:
    """``CREATE TABLE ANIMAL`` with the tracker's ID and every other of ``columns`` as TEXT, in that order."""
    extra = ", ".join(f"{c} TEXT" for c in columns if c != "ID")
    return f"CREATE TABLE ANIMAL (ID INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, {extra})"


def create_tables(
    con: sqlite3.Connection,
    *,
    animal_columns: Sequence[str] = TRACKER_ANIMAL_COLUMNS,
    event_metadata: bool = True,
) -> None:
    """The tracker's tables (no indexes) in an empty database, ANIMAL with ``animal_columns``
    and EVENT with or without METADATA."""
    con.executescript(SCHEMA)
    if tuple(animal_columns) != TRACKER_ANIMAL_COLUMNS:
        con.executescript(f"DROP TABLE ANIMAL; {animal_table(animal_columns)};")
    if not event_metadata:
        con.executescript(f"DROP TABLE EVENT; {EVENT_WITHOUT_METADATA};")
