"""The one YAML reader for files people hand us (manifests, configs, `--set` values): the safe loader
with aliases refused and a size cap, so a few hundred bytes of nested `*alias` references (a "billion
laughs" bomb) fail at once instead of expanding to gigabytes while the workspace lock is held. Our files
never need aliases: write each value out."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

MAX_YAML_BYTES = 4 << 20   # manifests and configs are kilobytes; a long URL list stays far below this


class YamlInputError(ValueError):
    pass


class NoAliasSafeLoader(yaml.SafeLoader):
    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            ev = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"alias *{ev.anchor} is not allowed (write the value out instead)", ev.start_mark)
        return super().compose_node(parent, index)


def load_yaml(text: str) -> Any:
    """yaml.safe_load without aliases; yaml.YAMLError on bad or aliased input."""
    return yaml.load(text, Loader=NoAliasSafeLoader)  # a SafeLoader subclass


def compose_yaml(text: str):
    """The node tree (for line numbers), under the same rules."""
    return yaml.compose(text, Loader=NoAliasSafeLoader)


def read_yaml_text(path: str | os.PathLike, what: str) -> str:
    """A YAML file's text: UTF-8, at most MAX_YAML_BYTES. YamlInputError names the file and the fix."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_YAML_BYTES:
            raise YamlInputError(f"{p}: {size} bytes is more than a {what} may be ({MAX_YAML_BYTES} bytes)")
        data = p.read_bytes()
    except OSError as e:
        raise YamlInputError(f"{p}: cannot read the {what} ({e.strerror or e})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise YamlInputError(f"{p}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}; "
                             f"cp1252/Latin-1?): save the {what} as UTF-8") from None


def yaml_error(path, e: yaml.YAMLError) -> str:
    """One line: FILE:LINE: not valid YAML: what (the parser's own message spans several lines)."""
    mark = getattr(e, "problem_mark", None)
    what = " ".join(x for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x) or str(e)
    return f"{path}{f':{mark.line + 1}' if mark is not None else ''}: not valid YAML: {what}"


__all__ = ["MAX_YAML_BYTES", "YamlInputError", "load_yaml", "compose_yaml", "read_yaml_text", "yaml_error"]
