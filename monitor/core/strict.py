"""The base of every configuration model: unknown keys are errors.

A typo in a hospital's config (`timout: 5s`) must not silently disable a check or a pager
channel; `populate_by_name` lets a key that has an alias (`from` → `sender`) be given
either way.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
