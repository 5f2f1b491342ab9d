"""The dataset card: README.md with Hugging Face style YAML front matter, written from dataset.json and
the samples table only (so a release with excluded samples regenerates an accurate card)."""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pandas as pd
import yaml

from pipeline.atomic import write_text
from pipeline.codespaces import CODE_SPACES

# How to cite each kind of source (prose references: authors, title, venue).
SOURCE_CITATIONS = {
    "meld": "A MELD-layout source. For the MELD corpus cite S. Poria, D. Hazarika, N. Majumder, G. Naik, "
            "E. Cambria, R. Mihalcea, *MELD: A Multimodal Multi-Party Dataset for Emotion Recognition in "
            "Conversations*, ACL 2019; its clips come from the TV series *Friends*, so MELD's terms and the "
            "broadcaster's rights apply.",
    "memor": "A MEmoR-layout source. For the MEmoR corpus cite G. Shen, X. Wang, X. Duan, H. Li, W. Zhu, "
             "*MEmoR: A Dataset for Multimodal Emotion Reasoning in Videos*, ACM Multimedia 2020; it is "
             "licensed by signed agreement: do not redistribute derived data beyond what that agreement allows.",
    "youtube": "Each video's creator holds its rights: cite the video by its `url`, `title` and `uploader` "
               "columns, and honour takedown requests (`wordsmile release --exclude`).",
    "table": "Cite the table's original publisher as named in the `url`/`license` columns.",
    "folder": "Cite the clips' original publisher as named in the `url`/`license` columns.",
}
EMOAVA = ("The file layout follows EmoAva: *When Words Smile: Generating Diverse Emotional Facial Expressions "
          "from Text*, EMNLP 2025.")


def _space_text(name: str) -> str:
    return CODE_SPACES[name].card_text if name in CODE_SPACES else ""


def size_category(n: int) -> str:
    """One of Hugging Face's size_categories values."""
    for lim, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                      (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):
        if n < lim:
            return name
    return "100M<n<1B"


# Source kinds whose texts and clips come from an existing corpus: the dataset extends it. Everything else
# (YouTube, folders, tables) is a new collection. Hugging Face accepts exactly "original" and "extended".
EXTENDED_KINDS = {"meld", "memor"}


def source_datasets(meta: dict) -> list[str]:
    kinds = {s["kind"] for s in meta.get("sources", [])}
    out = (["extended"] if kinds & EXTENDED_KINDS else []) + (["original"] if kinds - EXTENDED_KINDS else [])
    return out or ["original"]


def hf_configs() -> list[dict]:
    """The card's `configs`: one Parquet file per split, so `datasets.load_dataset(folder)` gives
    train / validation / test (not one `train` split holding the test set)."""
    from pipeline.formats.dataset import DATA_FILES, HF_SPLITS, SPLITS

    return [{"config_name": "default", "default": True,
             "data_files": [{"split": HF_SPLITS[s], "path": DATA_FILES[s]} for s in SPLITS]}]


def hf_license(meta: dict) -> str:
    lic = sorted({x for s in meta.get("sources", []) for x in s.get("license", []) if x and x != "unknown"})
    return lic[0].lower() if len(lic) == 1 else "other"


def front_matter(meta: dict) -> dict:
    n = meta["total"]["samples"]
    lic = hf_license(meta)
    fm = {
        "pretty_name": meta["name"],
        "license": lic,
        "language": list(meta.get("assemble_config", {}).get("language", ["en"])),
        "size_categories": [size_category(n)],
        "task_categories": ["text-to-video"],
        "tags": ["facial-expression", "text-to-expression", "emoava", meta["code_space"]],
        "annotations_creators": ["machine-generated"],   # codes are regressed by a model, not annotated
        "source_datasets": source_datasets(meta),
        "configs": hf_configs(),
        # our own key: Hugging Face parses `dataset_info` itself (features, splits) and would reject these
        "wordsmile": {"code_space": meta["code_space"], "D": meta["D"], "fps": meta["fps"],
                         "splits": {s: c["samples"] for s, c in meta["counts"].items()},
                         "config_hash": meta["config_hash"]},
    }
    if lic == "other":
        fm["license_name"] = "mixed: see Licences below"
    return fm


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!~>])")   # "|" is escaped by _table


def md_text(value, limit: int = 2000) -> str:
    """Text from a manifest or the source media shown as literal text in the card: one line, HTML
    escaped (no tags, no scripts), Markdown punctuation backslash-escaped (no links, images, headings
    or front matter), at most `limit` characters."""
    t = " ".join(str(value).split())
    if len(t) > limit:
        t = t[:limit] + "…"
    return _MD_SPECIAL.sub(r"\\\1", html.escape(t, quote=False))


def _table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


def _coverage_text(df: pd.DataFrame) -> str:
    """How much of each utterance the codes cover (`coverage` column)."""
    if "coverage" not in df.columns or df.empty:
        return "No coverage figures (no samples)."
    c = df["coverage"].astype(float)
    return (f"The `coverage` column is the share of each utterance's span (`start`-`end`) that its frames "
            f"cover: the kept face's first to last frame, less any frames at the ends without a usable code. "
            f"Median {c.median():.3f}, minimum {c.min():.3f}; {int((c < 0.999).sum())} of {len(c)} samples "
            f"cover less than the whole utterance. The face stage rejects samples below `faces.min_coverage` "
            f"(reason `faces.low_coverage`).")


def _speech_text(df: pd.DataFrame, meta: dict) -> str:
    """Where the samples' texts and spans came from, how far alignment moved them, and what the speech
    stage rejected (docs/speech.md)."""
    if df.empty or "text_source" not in df.columns:
        return "No samples."
    ts = df["text_source"].replace("", "unknown").value_counts()
    ss = df["span_source"].replace("", "given").value_counts()
    lines = ["Texts: " + ", ".join(f"{k} {int(v)}" for k, v in ts.items()) + ". Spans: "
             + ", ".join(f"{k} {int(v)}" for k, v in ss.items()) + "."]
    al = df[df["span_source"] == "aligned"]
    if len(al):
        a0, a1 = al["shift_start"].abs(), al["shift_end"].abs()
        lines.append(f"Aligned spans moved by a median |shift| of {a0.median():.2f} s at the start and "
                     f"{a1.median():.2f} s at the end (95th percentile {a0.quantile(0.95):.2f} s / "
                     f"{a1.quantile(0.95):.2f} s; `shift_start`, `shift_end`).")
    heard = df[df["asr_confidence"].notna()] if "asr_confidence" in df.columns else df.iloc[:0]
    if len(heard):
        models = sorted({m for m in heard["speech_model"] if m})
        lines.append(f"{len(heard)} samples were heard by {', '.join(models) or 'the speech stage'}: mean word "
                     f"probability median {heard['asr_confidence'].median():.2f}, minimum "
                     f"{heard['asr_confidence'].min():.2f}.")
    rej = [r for r in meta.get("funnel", []) if r["stage"] == "speech" and r["status"] != "ok"]
    if rej:
        lines.append("Rejected by the speech stage: " + ", ".join(f"`{r['reason']}` {r['count']}" for r in rej)
                     + " (text not heard where given, no speech, low confidence, other language, …).")
    return " ".join(lines)


def data_fields(out: Path) -> str:
    """The data-fields table: every Parquet column with its Arrow type (read from the written train file)
    and its meaning."""
    import pyarrow.parquet as papq

    from pipeline.formats.dataset import DATA_FILES, column_doc

    schema = papq.read_schema(Path(out) / DATA_FILES["train"])
    return _table(["column", "type", "meaning"],
                  [[f"`{f.name}`", f"`{f.type}`", column_doc(f.name)] for f in schema])


def write_card(out: Path, meta: dict, df: pd.DataFrame) -> Path:
    from pipeline.config import describe
    from pipeline.config.assemble import AssembleConfig

    name, D = meta["name"], meta["D"]
    reasons = {k: r for k, _, r in describe(AssembleConfig)}
    cfg = meta.get("assemble_config", {})
    thresholds = _table(["setting", "value", "why"],
                        [[f"`assemble.{k}`", f"`{json.dumps(v)}`", reasons.get(k, "")] for k, v in cfg.items()])
    splits = _table(["split", "samples", "frames", "videos"],
                    [[s, c["samples"], c["frames"], c["videos"]] for s, c in meta["counts"].items()])
    sources = _table(["source", "kind", "licence", "samples", "videos", "split"],
                     [[s["source_id"], s["kind"], md_text(", ".join(s["license"]), 200), s["samples"], s["videos"],
                       ", ".join(s["split_method"])] for s in meta.get("sources", [])])
    funnel = _table(["stage", "status", "reason", "count"],
                    [[r["stage"], r["status"], r["reason"], r["count"]] for r in meta.get("funnel", [])])
    kinds = sorted({s["kind"] for s in meta.get("sources", [])})
    cites = "\n".join(f"- **{k}**: {SOURCE_CITATIONS.get(k, 'see the source.')}" for k in kinds)
    dims = ", ".join(f"`{d}`" for d in meta["dims"])
    warnings = "\n".join(f"- ⚠ {w}" for w in meta.get("warnings", [])) or "- none"
    fm = yaml.safe_dump(front_matter(meta), sort_keys=False, allow_unicode=True)
    text = f"""---
{fm}---

# {name}

{md_text(meta.get('description') or '') or 'A text → facial-expression dataset built with wordsmile.'}
Each sample pairs an utterance with the speaker's facial-expression codes, one `{D}`-dimensional vector per
video frame (`{meta['code_space']}` code space, median {meta['fps']:g} fps). {meta['total']['samples']} samples,
{meta['total']['frames']} frames. {EMOAVA}

## Files

- `{{train,dev,test}}_stage1_text.pkl` / `_stage1_exps.pkl`: EmoAva stage-1 files, `list[str]` and
  `list[np.ndarray (T, {D}) float32]` in the same order (pickle protocol {meta.get('pickle_protocol')}).
- `stage1_mean.npy`, `stage1_std.npy`: `({D},)` float32 over the pooled frames of the
  {meta['stats']['basis']} split (std floored at {meta['stats']['std_floor']}).
- `data/train.parquet`, `data/validation.parquet`, `data/test.parquet`: one row per sample: text, codes
  (`list<list<float32>>`) and all metadata (EmoAva's `dev` is Hugging Face's `validation`). Load with
  `datasets.load_dataset("<this folder>")` (the `configs` above map the three splits) or
  `pandas.read_parquet("data/train.parquet")`.
- `dataset.json`: code space, dims, fps, counts, config hash, software and extractor versions.
- `report.html`: lengths, per-dimension statistics, sample code curves, the rejection funnel.

```python
import datasets, numpy as np
ds = datasets.load_dataset("path/to/this/folder")      # train / validation / test
x = np.asarray(ds["train"][0]["codes"], np.float32)    # (T, {D})
```

## Data fields

{data_fields(out)}

## Splits

{splits}

A source's official split is kept; otherwise whole videos are assigned by a hash of
(source, video), so no video appears in two splits and adding videos never moves another.

## Sources and licences

{sources}

## Text and timing

{_speech_text(df, meta)}

## Coverage

{_coverage_text(df)}

## Code space

`{meta['code_space']}`, D = {D}: {dims}. Jaw dimensions (indices): {meta.get('jaw_dims')}.
{_space_text(meta['code_space'])}

## Filters and thresholds

{thresholds}

## How samples were filtered

{funnel}

## Warnings

{warnings}

## Known limitations

- Expression codes are regressed from monocular video by a per-frame model and temporally smoothed: they
  are estimates, noisy under profile views, occlusion, low light and small faces.
- Frame rates are not normalised (see `fps` per sample), as in EmoAva.
- Sequences longer than {cfg.get('max_frames')} frames were dropped, so long utterances are under-represented.
- Texts come from captions, corpora or Whisper transcripts (`text_source`): transcripts and automatic
  captions contain recognition errors; aligned and transcribed spans are accurate to about 0.1 s.
- Speakers are mostly adult actors or video creators; demographics are neither balanced nor annotated.
- Emotion labels, where present, come from the source and are not re-annotated.

## Citation

{cites}
- {EMOAVA}
{('- ' + _space_text(meta['code_space'])) if _space_text(meta['code_space']) else ''}
"""
    return write_text(Path(out) / "README.md", text)
