"""Mice for hand-made simulated recordings: one cage of adult females with no preference of their own."""

from __future__ import annotations

from lmt_stereotype import simulation
from lmt_stereotype.config import Params


def adult_females(params: Params, n: int = 4) -> list[simulation.SimMouse]:
    """``n`` adult females of one cage (ANIMAL.IDs 1..n), their stops drawn from the site weights alone."""
    return [
        simulation.SimMouse(
            animal_id=i + 1,
            rfid=f"0000041999{i + 1:02d}",
            name=f"m{i + 1}",
            sex="F",
            age="adult",
            fingerprint_cm=(30.0, 20.0),
            site_log_weights=(0.0,) * len(simulation.site_names(params.cage_layout)),
        )
        for i in range(n)
    ]
