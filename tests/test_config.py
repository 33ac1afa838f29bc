"""params.yaml is validated once, at the edge; every problem names its key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lmt_stereotype.config import load_params
from lmt_stereotype.errors import InputError

ROOT = Path(__file__).parents[1]


def with_change(tmp_path: Path, section: str, key: str, value) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw[section][key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("stops", "speed_threshold_cm_s", "fast", "stops.speed_threshold_cm_s"),
        ("stops", "speed_threshold_cm_s", -5, "stops.speed_threshold_cm_s: Input should be greater than 0"),
        ("stops", "speed_window_frames", 6, "speed_window_frames must be odd"),
        ("histograms", "grid", 0, "histograms.grid: Input should be greater than 0"),
        ("histograms", "bins", 10, "histograms.bins: Extra inputs are not permitted"),
        ("simulate", "profile", "weekend", "simulate.profile"),
    ],
)
def test_bad_parameter_is_named(tmp_path, section, key, value, message):
    with pytest.raises(InputError) as err:
        load_params(with_change(tmp_path, section, key, value))
    assert message in err.value.problem


def test_cli_refuses_bad_parameters_with_exit_code_2(tmp_path):
    path = with_change(tmp_path, "histograms", "grid", -1)
    proc = subprocess.run(
        [sys.executable, "-m", "lmt_stereotype", "histograms", "--params", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "histograms.grid" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_or_broken_parameter_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("stops: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_params(tmp_path / "bad.yaml")
