"""Source manifests: YAML files listing the sources of a dataset.

```yaml
name: sample                 # dataset name (a safe id)
license: CC-BY-4.0           # default licence recorded for sources that do not state one
sources:
  - id: talk                 # unique, safe id: letters, digits, '-', '_', '.'
    kind: folder             # youtube | meld | memor | table | folder
    path: sample/talk        # relative paths resolve against the manifest's folder
```

Validation errors name the file, the entry (index and id), the field and the line.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.yamlsafe import YamlInputError, yaml_error, compose_yaml, load_yaml, read_yaml_text

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_safe_id(v: str) -> str:
    if not SAFE_ID.match(v or "") or ".." in v:
        raise ValueError("must be 1-128 letters, digits, '.', '_' or '-', start with a letter or digit, "
                         "and contain no '..' (it names folders in the workspace)")
    return v


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(description="unique id of this source within the manifest")
    license: str = Field("", description="licence of this source's media; empty = the manifest's")
    enabled: bool = Field(True, description="set false to keep an entry but skip it")
    transcript: Literal["auto", "captions", "asr", ""] = Field(
        "", description="this source's speech.transcript policy; empty = the config's")
    align: Literal["auto", "off", ""] = Field("", description="this source's speech.align policy; empty = the config's")

    _v_id = field_validator("id")(lambda cls, v: check_safe_id(v))
    # YAML reads a bare `off` as false (and `on` as true): take them as the words they were written as
    _v_align = field_validator("align", mode="before")(
        lambda cls, v: {False: "off", True: "auto"}.get(v, v) if isinstance(v, bool) else v)


class Span(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: float = Field(ge=0)
    end: float = Field(gt=0)


class YouTubeEntry(_Entry):
    kind: Literal["youtube"]
    urls: list[str] = Field(min_length=1, description="videos, playlists or channels")
    spans: dict[str, list[Span]] = Field({}, description="optional: per URL or video id, download only these spans")
    max_videos: int = Field(0, ge=0, description="cap per playlist/channel; 0 = no cap")


class MeldEntry(_Entry):
    kind: Literal["meld"]
    root: str = Field(description="folder with *_sent_emo.csv and the clip folders")
    splits: list[Literal["train", "dev", "test"]] = ["train", "dev", "test"]


class MemorEntry(_Entry):
    kind: Literal["memor"]
    root: str = Field(description="folder with data.json and the clips")
    data_json: str = "data.json"


class TableEntry(_Entry):
    kind: Literal["table"]
    path: str = Field(description="CSV, JSONL or Parquet with video, start, end, text[, speaker, emotion, split]")
    media_root: str = Field("", description="folder that relative video paths resolve against; default: the table's")


class FolderEntry(_Entry):
    kind: Literal["folder"]
    path: str = Field(description="folder of clips, each with a sidecar caption file (.vtt or .srt)")
    pattern: str = "*.mp4"


SourceEntry = Annotated[Union[YouTubeEntry, MeldEntry, MemorEntry, TableEntry, FolderEntry],
                        Field(discriminator="kind")]


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    license: str = "unknown"
    description: str = ""
    sources: list[SourceEntry] = Field(min_length=1)

    _v_name = field_validator("name")(lambda cls, v: check_safe_id(v))

    # set by load_manifest, not by the YAML
    path: Path | None = Field(None, exclude=True)

    def resolve(self, p: str) -> Path:
        """Resolve a path written in the manifest against the manifest's own folder."""
        q = Path(p).expanduser()
        if not q.is_absolute() and self.path is not None:
            q = self.path.parent / q
        return q.resolve()

    def license_of(self, entry) -> str:
        return entry.license or self.license


class ManifestError(ValueError):
    pass


def _line_index(text: str) -> dict[tuple, int]:
    """Map YAML key paths to 1-based line numbers, so errors can say where to look."""
    lines: dict[tuple, int] = {}

    def walk(node, path):
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                lines[path + (k.value,)] = k.start_mark.line + 1
                walk(v, path + (k.value,))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, path + (i,))

    try:
        root = compose_yaml(text)
        if root is not None:
            walk(root, ())
    except yaml.YAMLError:
        pass
    return lines


def load_manifest(path: str | Path) -> Manifest:
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"{path}: manifest file does not exist")
    try:
        text = read_yaml_text(path, "manifest")
    except YamlInputError as e:
        raise ManifestError(str(e)) from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as e:
        raise ManifestError(yaml_error(path, e)) from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: the top level must be a mapping with 'name' and 'sources'")
    try:
        m = Manifest.model_validate(data)
    except ValidationError as e:
        lines = _line_index(text)
        msgs = []
        for err in e.errors():
            loc = tuple(err["loc"])
            where = []
            if len(loc) >= 2 and loc[0] == "sources" and isinstance(loc[1], int):
                i = loc[1]
                entry = (data.get("sources") or [None] * (i + 1))[i] if isinstance(data.get("sources"), list) else None
                eid = entry.get("id") if isinstance(entry, dict) else None
                where.append(f"sources[{i}]" + (f" (id {eid!r})" if eid else ""))
                # pydantic puts the discriminator tag in the loc: drop it from the field path
                rest = [p for p in loc[2:] if p not in ("youtube", "meld", "memor", "table", "folder")]
                field = ".".join(str(p) for p in rest)
            else:
                field = ".".join(str(p) for p in loc)
            key = tuple(p for p in loc if p not in ("youtube", "meld", "memor", "table", "folder"))
            line = None
            for n in range(len(key), 0, -1):
                if key[:n] in lines:
                    line = lines[key[:n]]
                    break
            msg = err["msg"]
            if err["type"] == "union_tag_invalid" or err["type"] == "union_tag_not_found":
                msg += " (kind must be one of youtube, meld, memor, table, folder)"
            head = f"{path}" + (f":{line}" if line else "")
            msgs.append(f"{head}: {' '.join(where)}{': ' if where else ''}field '{field or '(entry)'}': {msg}")
        raise ManifestError("invalid manifest:\n  " + "\n  ".join(msgs)) from None
    ids = [s.id for s in m.sources]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ManifestError(f"{path}: duplicate source ids {dup}: ids name workspace folders and must be unique")
    m.path = path.resolve()
    return m
