"""Heard words -> sentence-level utterances, by the rules caption cues follow.

Each word becomes a one-word cue and extract/captions.py `merge_cues` groups them: a sentence end
closes an utterance, a pause longer than `sources.captions.max_gap_s` or `max_duration_s` starts a new
one, and `drop_short` removes the too-short ones. Transcripts and captions therefore cut the same way;
only the edges differ: those of a heard utterance come from its words, checked against the audio's
energy (align.refine_edges).
"""
from __future__ import annotations

import numpy as np

from extract.captions import Cue, drop_short, merge_cues


def heard_utterances(words, regions, duration: float, cap_cfg, cfg, loud=None) -> tuple[list[dict], int]:
    """(utterance results as speech.json holds them, number dropped as shorter than min_duration_s)."""
    from extract.speech.align import refine_edges
    from extract.speech.vad import speech_in, speech_share

    cues = [Cue(float(w[1]), float(max(w[2], w[1])), w[0], [(w[0], float(w[1]), float(max(w[2], w[1])))])
            for w in words]
    utts = merge_cues(cues, cap_cfg)
    # probabilities travel beside merge_cues (its words are (word, start, end)): words keep their order
    probs = iter(float(w[3]) for w in words)
    per_utt = []
    for u in utts:
        n = len(u.words or [])
        per_utt.append([next(probs) for _ in range(n)])
    out, kept_ends = [], []
    for k, (u, ps) in enumerate(zip(utts, per_utt)):
        lo = kept_ends[-1] if kept_ends else 0.0
        hi = utts[k + 1].start if k + 1 < len(utts) else duration
        s, e = refine_edges(u.start, u.end, loud, cfg.edge_pad_s, lo, hi)
        u.start, u.end = s, e
        kept_ends.append(e)
        u.words = [(w, a, b) for (w, a, b) in (u.words or [])]
        out.append((u, ps))
    keep, n_short = drop_short([u for u, _ in out], cap_cfg.min_duration_s)
    keep_ids = {id(u) for u in keep}
    res = []
    for u, ps in out:
        if id(u) not in keep_ids:
            continue
        # the edges came from the audio: word times stay inside them
        ws = [[w, round(min(max(a, u.start), u.end), 3), round(min(max(b, u.start), u.end), 3), round(p, 3)]
              for (w, a, b), p in zip(u.words, ps)]
        res.append({"status": "ok", "reason": "ok", "detail": "", "start": round(u.start, 3),
                    "end": round(u.end, 3), "text": u.text, "words": ws, "span_source": "asr",
                    "given_start": None, "given_end": None,
                    "asr_confidence": round(float(np.mean(ps)) if ps else 0.0, 3), "match": None,
                    "speech_spans": speech_in(regions, u.start, u.end),
                    "speech_share": round(speech_share(regions, u.start, u.end), 3)})
    return res, n_short


__all__ = ["heard_utterances"]
