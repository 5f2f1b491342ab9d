"""One typed configuration for every stage.

Read from YAML (safe loader) with `section.field=value` command-line overrides. Each stage owns a
section file here; every field has a default and a one-line reason. `Config.hash()` is recorded with
every output; `section_hash(name)` keys a stage's cache so a changed threshold misses only that stage.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import ValidationError

from pipeline.config._base import F, Section
from pipeline.config.assemble import AssembleConfig
from pipeline.config.expressions import ExpressionsConfig
from pipeline.config.faces import FacesConfig
from pipeline.config.media import MediaConfig
from pipeline.config.model import ModelConfig
from pipeline.config.orchestration import OrchestrationConfig
from pipeline.config.sources import SourcesConfig
from pipeline.hashing import obj_hash


class Config(Section):
    media: MediaConfig = MediaConfig()
    sources: SourcesConfig = SourcesConfig()
    faces: FacesConfig = FacesConfig()
    expressions: ExpressionsConfig = ExpressionsConfig()
    assemble: AssembleConfig = AssembleConfig()
    model: ModelConfig = ModelConfig()
    orchestration: OrchestrationConfig = OrchestrationConfig()

    def hash(self) -> str:
        return obj_hash(self.model_dump(mode="json"))[:16]

    def section_params(self, name: str) -> dict:
        """One section's values as JSON-able data (the part of a stage's cache key that comes from config)."""
        return getattr(self, name).model_dump(mode="json") if name else {}

    def section_hash(self, name: str) -> str:
        return obj_hash(self.section_params(name))[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


class ConfigError(ValueError):
    pass


def _set_dotted(d: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
        if not isinstance(d, dict):
            raise ConfigError(f"override {dotted!r}: {k!r} is not a section")
    d[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """'faces.policy=speaker' -> ('faces.policy', 'speaker'); the value is read as YAML
    ('3' -> 3, '[0.8,0.1,0.1]' -> list, 'true' -> True)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form section.field=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _format_errors(err: ValidationError, origin: str) -> str:
    lines = [f"invalid configuration ({origin}):"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        lines.append(f"  {loc}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def load_config(path: str | os.PathLike | None = None, overrides: Iterable[str] = ()) -> Config:
    data: dict = {}
    origin = "defaults"
    if path:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections")
        origin = str(p)
    overrides = list(overrides or ())
    for o in overrides:
        k, v = parse_override(o)
        _set_dotted(data, k, v)
    if overrides:
        origin += " + overrides " + " ".join(overrides)
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, origin)) from None


def describe(model: type[Section] = Config, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted name, default, reason) for every field: the documentation of the config."""
    out = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, Section):
            out += describe(ann, prefix + name + ".")
        else:
            out.append((prefix + name, field.default, field.description or ""))
    return out


__all__ = ["Config", "ConfigError", "load_config", "parse_override", "describe", "F", "Section"]
