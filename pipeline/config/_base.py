"""Shared base for config sections: unknown keys are errors, and every field carries a reason."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def F(default: Any, reason: str, **kw) -> Any:
    """A config field: its default and a one-line reason (shown by `wordsmile config show`)."""
    return Field(default, description=reason, **kw)
