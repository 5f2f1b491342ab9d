"""Caption parsing (WebVTT manual + rolling auto, SRT) and cue merging, on hand-written files and
property tests."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extract.captions import (Cue, caption_utterances, merge_cues, normalize_text, parse_captions,
                              parse_timestamp, read_captions)
from pipeline.config.sources import CaptionConfig

MANUAL_VTT = """\ufeffWEBVTT
Kind: captions

STYLE
::cue { color: yellow }

NOTE this is a comment
spanning two lines

intro
00:00:00.000 --> 00:00:01.500 align:start position:10%
[Music]

1
00:00:01.500 --> 00:00:03.000
<v Ann>Hello &amp; welcome to the <i>show</i>,

2
00:00:03.100 --> 00:00:04.000
<v Ann>my friends.

3
00:00:04.200 --> 00:00:05.000
<v.loud Bob>Thanks! (laughs) Glad&nbsp;to  be here.

00:06.000 --> 00:07.000
♪ la la la ♪

4
00:00:08.000 --> 00:00:07.000
backwards cue is unusable
"""

ROLLING_VTT = """WEBVTT
Kind: captions
Language: en

00:00:00.160 --> 00:00:02.270 align:start position:0%
 
so<00:00:00.480><c> today</c><00:00:00.960><c> we're</c><00:00:01.280><c> going</c>

00:00:02.270 --> 00:00:02.280 align:start position:0%
so today we're going
 

00:00:02.280 --> 00:00:04.500 align:start position:0%
so today we're going
to<00:00:02.600><c> talk</c><00:00:03.000><c> about</c><00:00:03.400><c> faces</c>

00:00:04.500 --> 00:00:04.510 align:start position:0%
to talk about faces
 

00:00:06.000 --> 00:00:07.000 align:start position:0%
to talk about faces
[Music]

00:00:08.000 --> 00:00:09.500 align:start position:0%
[Music]
and<00:00:08.500><c> smiles</c>
"""

SRT = """1
0:00:01,000 --> 0:00:02,500
<font color="#ffff00">Where were you</font>
last night?

2
00:00:02,600 --> 00:00:04,000
{\\an8}JOEY: I was out.

This line belongs to cue 2 after a stray blank line.

3
00:00:10,000 --> 00:00:11,000
I’m back… really.
"""


def test_manual_vtt_cleans_tags_entities_and_nonspeech():
    res = parse_captions(MANUAL_VTT)
    assert res.fmt == "vtt" and not res.rolling
    assert [c.text for c in res.cues] == ["Hello & welcome to the show,", "my friends.",
                                          "Thanks! Glad to be here."]
    assert [c.speaker for c in res.cues] == ["Ann", "Ann", "Bob"]
    assert res.n_bad == 1 and "before it starts" in res.warnings[0]
    assert res.n_nonspeech == 2   # [Music] and the sung line
    assert res.cues[2].start == pytest.approx(4.2)   # mm:ss.ttt timings are accepted too
    utts = merge_cues(res.cues, CaptionConfig())
    # the comma-ended cue joins the next one; a speaker change starts a new utterance
    assert [u.text for u in utts] == ["Hello & welcome to the show, my friends.", "Thanks!", "Glad to be here."]
    assert utts[0].start == pytest.approx(1.5) and utts[0].end == pytest.approx(4.0)
    assert utts[0].speaker == "Ann" and utts[1].speaker == "Bob"


def test_rolling_auto_captions_dedupe_and_word_times():
    res = parse_captions(ROLLING_VTT)
    assert res.rolling and res.n_nonspeech == 1   # the cue holding only the old line and [Music]
    assert [c.text for c in res.cues] == ["so today we're going", "to talk about faces", "and smiles"]
    w = res.cues[0].words
    assert [x[0] for x in w] == ["so", "today", "we're", "going"]
    assert [round(x[1], 3) for x in w] == [0.16, 0.48, 0.96, 1.28]
    assert w[-1][2] == pytest.approx(2.27)
    utts = merge_cues(res.cues, CaptionConfig(max_gap_s=1.0))
    # no punctuation in ASR: the 1.5 s and 3.5 s gaps split utterances
    assert [u.text for u in utts] == ["so today we're going to talk about faces", "and smiles"]
    words = json.loads(utts[0].words_json())
    assert [x[0] for x in words] == "so today we're going to talk about faces".split()
    assert all(a[1] <= b[1] for a, b in zip(words, words[1:]))


def test_srt_variants():
    res = parse_captions(SRT)
    assert res.fmt == "srt"
    assert [c.text for c in res.cues] == [
        "Where were you last night?", "I was out. This line belongs to cue 2 after a stray blank line.",
        "I’m back… really."]
    assert res.cues[1].speaker == "Joey"
    assert res.cues[0].start == 1.0 and res.cues[0].end == 2.5
    utts = merge_cues(res.cues, CaptionConfig())
    assert [u.text for u in utts] == ["Where were you last night?", "I was out.",
                                      "This line belongs to cue 2 after a stray blank line.", "I’m back…", "really."]
    # the split inside cue 2 shares its time by characters
    assert utts[1].start == pytest.approx(2.6) and utts[1].end < utts[2].end == pytest.approx(4.0)


def test_max_duration_and_min_duration(tmp_path):
    cues = [Cue(i * 1.0, i * 1.0 + 0.9, f"word{i}") for i in range(25)]
    utts = merge_cues(cues, CaptionConfig(max_duration_s=5.0))
    assert all(u.end - u.start <= 5.0 for u in utts) and len(utts) == 5
    p = tmp_path / "a.srt"
    p.write_text("1\n00:00:00,000 --> 00:00:00,100\nHi.\n\n2\n00:00:05,000 --> 00:00:07,000\nA real sentence.\n",
                 encoding="cp1252")
    utts, fig = caption_utterances(p, CaptionConfig(min_duration_s=0.3))
    assert [u.text for u in utts] == ["A real sentence."] and fig["n_short_dropped"] == 1


def test_read_captions_cp1252_and_normalisation(tmp_path):
    p = tmp_path / "old.srt"
    p.write_bytes("1\r\n00:00:01,000 --> 00:00:02,000\r\nCaf\u00e9 \u0093quoted\u0094\r\n".encode("latin-1"))
    res = read_captions(p)
    assert res.cues[0].text == "Café \u201cquoted\u201d"
    assert normalize_text("e\u0301  x\u200b\u00a0y\n") == "\u00e9 x y"
    assert parse_timestamp("1:02:03,5") == pytest.approx(3723.5)
    assert parse_captions("").cues == [] and parse_captions("WEBVTT\n\n").cues == []


# ---------------------------------------------------------------- properties

_word = st.text(alphabet="abcdefghij.,!?", min_size=1, max_size=6)


@st.composite
def cue_lists(draw):
    n = draw(st.integers(0, 25))
    t = 0.0
    cues = []
    for _ in range(n):
        t += draw(st.floats(0, 3))
        dur = draw(st.floats(0, 4))
        words = draw(st.lists(_word, min_size=1, max_size=8))
        timed = draw(st.booleans())
        ws = None
        if timed:
            step = dur / len(words)
            ws = [(w, t + k * step, t + (k + 1) * step) for k, w in enumerate(words)]
        cues.append(Cue(t, t + dur, " ".join(words), ws, draw(st.sampled_from(["", "", "A", "B"]))))
        t += dur * draw(st.floats(0, 1))   # cues may overlap, as rolling captions do
    return cues


@given(cue_lists(), st.floats(0.1, 3), st.floats(1, 12))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_merge_is_lossless_and_monotone(cues, gap, maxdur):
    utts = merge_cues(cues, CaptionConfig(max_gap_s=gap, max_duration_s=maxdur))
    src = [w for c in sorted(cues, key=lambda c: (c.start, c.end)) for w in c.text.split()]
    assert [w for u in utts for w in u.text.split()] == src   # nothing lost, nothing duplicated, in order
    for u in utts:
        assert u.start <= u.end
        if u.words:
            assert [w for w, _, _ in u.words] == u.text.split()
    for a, b in zip(utts, utts[1:]):
        assert a.start <= b.start and a.end <= b.start + 1e-9


_caption_chars = st.sampled_from(list("WEBVTT0123456789:.,-> \n<>/cvib&;[]()♪ab\r\ufeff"))


@given(st.text(_caption_chars, max_size=400))
@settings(max_examples=200, deadline=None)
def test_parser_never_crashes_on_junk(text):
    res = parse_captions(text)
    for c in res.cues:
        assert c.start <= c.end and c.text == normalize_text(c.text) and c.text
    merge_cues(res.cues)


@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 3000), st.lists(_word, min_size=1, max_size=5)),
                max_size=12), st.booleans())
@settings(max_examples=100, deadline=None)
def test_written_files_roundtrip(cues, srt):
    """Well-formed files of arbitrary cues parse back to the same words, in time order."""
    def ts(ms, sep):
        return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"
    blocks = [] if srt else ["WEBVTT", ""]
    for i, (s, d, words) in enumerate(cues, 1):
        sep = "," if srt else "."
        blocks += [str(i), f"{ts(s, sep)} --> {ts(s + d, sep)}", " ".join(words), ""]
    res = parse_captions("\n".join(blocks))
    expect = [w for s, d, words in sorted(cues, key=lambda c: (c[0], c[0] + c[1])) for w in words]
    assert [w for c in res.cues for w in c.text.split()] == expect
    assert all(a.start <= b.start for a, b in zip(res.cues, res.cues[1:]))


@pytest.mark.parametrize("fmt,text", [
    ("vtt", "WEBVTT\n\n00:00:01.000 --> 00:00:03.000\n- Where are you going?\n- Out.\n"),
    ("srt", "1\n00:00:01,000 --> 00:00:03,000\n-Where are you going?\n-Out.\n"),
    ("srt", "1\n00:00:01,000 --> 00:00:03,000\n– Where are you going?\n>> Out.\n"),
])
def test_every_dialogue_dash_is_stripped(fmt, text):
    """Two speakers in one cue: both lines kept, each line's speaker dash removed."""
    res = parse_captions(text, fmt=fmt)
    assert [c.text for c in res.cues] == ["Where are you going? Out."]


def test_dash_inside_a_line_is_text():
    res = parse_captions("WEBVTT\n\n00:00:01.000 --> 00:00:03.000\nWell - maybe.\nTwenty-two.\n")
    assert [c.text for c in res.cues] == ["Well - maybe. Twenty-two."]
