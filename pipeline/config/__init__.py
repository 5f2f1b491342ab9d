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
from pipeline.config.speech import SpeechConfig
from pipeline.hashing import obj_hash
from pipeline.yamlsafe import YamlInputError, yaml_error, load_yaml, read_yaml_text


class Config(Section):
    media: MediaConfig = MediaConfig()
    sources: SourcesConfig = SourcesConfig()
    speech: SpeechConfig = SpeechConfig()
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
        value = load_yaml(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _format_errors(err: ValidationError, origin: str) -> str:
    lines = [f"invalid configuration ({origin}):"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        got = repr(e.get("input"))
        lines.append(f"  {loc}: {e['msg']} (got {got[:200] + '…' if len(got) > 200 else got})")
    return "\n".join(lines)


def load_config(path: str | os.PathLike | None = None, overrides: Iterable[str] = ()) -> Config:
    data: dict = {}
    origin = "defaults"
    if path:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist")
        try:
            data = load_yaml(read_yaml_text(p, "config file")) or {}
        except YamlInputError as e:
            raise ConfigError(str(e)) from None
        except yaml.YAMLError as e:
            raise ConfigError(yaml_error(p, e)) from None
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


def local_only_settings(model: type[Section] = Config, prefix: str = "") -> list[str]:
    """Dotted names of the settings marked local_only (executables, paths, doors): remote callers
    (flow parameters) may not set them, nor the sections that hold them."""
    out = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, Section):
            out += local_only_settings(ann, prefix + name + ".")
        elif (field.json_schema_extra or {}).get("local_only"):
            out.append(prefix + name)
    return out


def refused_remote_overrides(overrides: Iterable[str], section: str = "") -> list[str]:
    """The overrides (section.field=value, or field=value under `section`) that set a local_only
    setting or a whole section holding one."""
    guarded = local_only_settings()
    bad = []
    for o in overrides:
        key = str(o).split("=", 1)[0].strip()
        if section and not key.startswith(section + "."):
            key = f"{section}.{key}"
        if any(g == key or g.startswith(key + ".") for g in guarded):
            bad.append(str(o))
    return bad


__all__ = ["Config", "ConfigError", "load_config", "parse_override", "describe", "local_only_settings",
           "refused_remote_overrides", "F", "Section"]
