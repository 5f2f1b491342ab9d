"""Shared base for config sections: unknown keys are errors, and every field carries a reason."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def F(default: Any, reason: str, local_only: bool = False, **kw) -> Any:
    """A config field: its default and a one-line reason (shown by `wordsmile config show`).

    `local_only`: the setting names an executable or a path, or opens a door (file:// URLs, private
    addresses, a scheduler): it may come from the local config file and the CLI, never from a remote
    caller such as a Prefect flow parameter (flows/flows.py refuses it there)."""
    if local_only:
        kw["json_schema_extra"] = {"local_only": True}
    return Field(default, description=reason, **kw)
