"""The LMT database schema: the tables the tracker creates, and the variants real files show.

One source for the reader (:mod:`lmt_stereotype.lmt`), the simulator
(:mod:`lmt_stereotype.simulation`) and the tests that build databases by hand. The
facts are in ``shared/lmt/FORMAT.md``; this module only writes them down as SQL, with
identifiers single-quoted as the tracker writes them (``sqlite_master`` shows them so).

- :data:`SCHEMA`: the five tables as the tracker creates them today (ANIMAL with the
  tracker's 4 columns, EVENT with METADATA).
- :data:`INDEXES`: the tracker's ten indexes, built after the rows are in;
  :data:`COVERING_INDEX` among them is the one the reader reads tracks through.
- :data:`LOG_TABLE`: the table lmt-analysis adds the first time it processes a file.
- :data:`ANIMAL_LAYOUTS`: every ANIMAL layout real files have (3 to 9 columns, FORMAT.md's
  table), :func:`animal_table` the DDL for one.
- :data:`EVENT_WITHOUT_METADATA`: EVENT as older files have it.
- :func:`create_tables`: the schema with a chosen ANIMAL layout and EVENT variant.

The DDL is written to each file's ``sqlite_master`` verbatim, so the simulator's bytes
depend on every character here: change it only together with ``SIMULATOR_VERSION``.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence


def _quoted(ddl: str) -> str:
    """The tracker's spelling: every upper-case or camel-case identifier of ``ddl`` single-quoted."""
    keywords = {
        "CREATE", "TABLE", "INDEX", "ON", "INTEGER", "NOT", "NULL", "PRIMARY", "KEY", "AUTOINCREMENT",
        "TEXT", "REAL", "UNIQUE", "FOREIGN", "REFERENCES",
    }  # fmt: skip
    return re.sub(r"\b[A-Za-z_][A-Za-z_0-9]*\b", lambda m: m[0] if m[0] in keywords else f"'{m[0]}'", ddl)


SCHEMA = _quoted("""
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
""")
"""Tables exactly as the LMT tracker creates them (FORMAT.md)."""

INDEXES = _quoted("""
CREATE INDEX animalIndex ON ANIMAL(ID);
CREATE INDEX detectionIndex ON DETECTION(ID, FRAMENUMBER);
CREATE INDEX detetIdIndex ON DETECTION(ID);
CREATE INDEX detframenumberIndex ON DETECTION(FRAMENUMBER);
CREATE INDEX detectionFastLoadXYIndex ON DETECTION(ANIMALID, FRAMENUMBER, MASS_X, MASS_Y);
CREATE INDEX eventIndex ON EVENT(ID, STARTFRAME, ENDFRAME);
CREATE INDEX eventStartFrameIndex ON EVENT(STARTFRAME);
CREATE INDEX eventEndFrameIndex ON EVENT(ENDFRAME);
CREATE INDEX eventstartendIndex ON EVENT(STARTFRAME, ENDFRAME);
CREATE INDEX indexeventidIndex ON EVENT(ID);
""")
"""The tracker's ten indexes; the reader relies on :data:`COVERING_INDEX` when present."""

COVERING_INDEX = "detectionFastLoadXYIndex"
"""Covers (ANIMALID, FRAMENUMBER, MASS_X, MASS_Y): tracks are read from it without touching DATA."""

LOG_TABLE = (
    "CREATE TABLE LOG (id INTEGER PRIMARY KEY AUTOINCREMENT UNIQUE, process TEXT, version TEXT, date TEXT,"
    " tmin INTEGER, tmax INTEGER)"
)
"""What lmt-analysis adds the first time it processes a file (a row per processing run)."""

TRACKER_ANIMAL_COLUMNS = ("ID", "RFID", "GENOTYPE", "NAME")
"""ANIMAL as the tracker creates it (in :data:`SCHEMA`)."""

_AGE_SEX_STRAIN = (*TRACKER_ANIMAL_COLUMNS, "AGE", "SEX", "STRAIN")
ANIMAL_LAYOUTS: dict[str, tuple[str, ...]] = {
    "3": ("ID", "RFID", "NAME"),  # very old files, before GENOTYPE: lmt-analysis cannot open them
    "4": TRACKER_ANIMAL_COLUMNS,  # the tracker today
    "5": (*TRACKER_ANIMAL_COLUMNS, "IND"),  # older lab scripts
    "7": _AGE_SEX_STRAIN,  # lmt-analysis AlterColBase
    "8": (*_AGE_SEX_STRAIN, "SETUP"),  # lmt-analysis AlterColBase
    "9": (*_AGE_SEX_STRAIN, "SETUP", "TREATMENT"),  # lab scripts
    "9-IND": (*_AGE_SEX_STRAIN, "SETUP", "IND"),  # lab scripts; the 9 columns lmt-analysis's loader reads
}
"""Every ANIMAL layout of FORMAT.md's table, in table order; no other occurs in real files
(no 6 columns, no IND in the 7- and 8-column ones)."""


EVENT_WITHOUT_METADATA = _quoted(
    "CREATE TABLE EVENT (ID INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, NAME TEXT, DESCRIPTION TEXT,"
    " STARTFRAME INTEGER, ENDFRAME INTEGER, IDANIMALA INTEGER, IDANIMALB INTEGER, IDANIMALC INTEGER,"
    " IDANIMALD INTEGER)"
)
"""EVENT as older files have it: the tracker inserts events without METADATA."""


def animal_table(columns: Sequence[str]) -> str:
    """``CREATE TABLE ANIMAL`` with the tracker's ID and every other of ``columns`` as TEXT, in that order."""
    extra = ", ".join(f"{c} TEXT" for c in columns if c != "ID")
    return _quoted(f"CREATE TABLE ANIMAL (ID INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, {extra})")


def create_tables(
    con: sqlite3.Connection,
    *,
    animal_columns: Sequence[str] = TRACKER_ANIMAL_COLUMNS,
    event_metadata: bool = True,
    log: bool = False,
) -> None:
    """The tracker's tables (no indexes) in an empty database, ANIMAL with ``animal_columns``,
    EVENT with or without METADATA, and lmt-analysis's LOG if ``log``."""
    con.executescript(SCHEMA)
    if tuple(animal_columns) != TRACKER_ANIMAL_COLUMNS:
        con.executescript(f"DROP TABLE ANIMAL; {animal_table(animal_columns)};")
    if not event_metadata:
        con.executescript(f"DROP TABLE EVENT; {EVENT_WITHOUT_METADATA};")
    if log:
        con.execute(LOG_TABLE)
