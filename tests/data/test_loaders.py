import json
import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.audio_fixtures import write_wav
from voxaudit.data.loaders import detect_layout, load_corpus, pattern_regex
from voxaudit.errors import CorpusError, LayoutError


def _librispeech(root):
    for spk, chapter in (("19", "198"), ("26", "495")):
        folder = root / spk / chapter
        lines = []
        for i in range(3):
            utt = f"{spk}-{chapter}-{i:04d}"
            write_wav(folder / f"{utt}.flac", seed=i)
            lines.append(f"{utt} HELLO WORLD NUMBER {i}")
        (folder / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def test_librispeech_layout(tmp_path):
    root = _librispeech(tmp_path / "LibriSpeech")
    assert detect_layout(root) == "librispeech"
    corpus = load_corpus(root)
    assert len(corpus) == 6 and corpus.speakers == ["19", "26"]
    assert corpus["19-198-0002"].transcript == "hello world number two"
    assert corpus["19-198-0002"].duration == pytest.approx(0.5)
    assert corpus.problems == ()


def test_librispeech_missing_audio_names_the_transcript_line(tmp_path):
    root = _librispeech(tmp_path)
    (root / "19" / "198" / "19-198-0001.flac").unlink()
    corpus = load_corpus(root)
    assert len(corpus) == 5
    [problem] = corpus.problems
    assert problem.where.endswith("19-198.trans.txt:2") and "19-198-0001" in problem.reason


def test_kaldi_layout_with_segments(tmp_path):
    write_wav(tmp_path / "audio" / "rec1.wav", seconds=3.0)
    write_wav(tmp_path / "audio" / "rec2.wav", seconds=2.0)
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text(
        "rec1 ../audio/rec1.wav\nrec2 ../audio/rec2.wav\nrec3 sox x.wav -t wav - |\n"
    )
    (data / "segments").write_text(
        "u1 rec1 0.0 1.5\nu2 rec1 1.5 3.0\nu3 rec2 0.2 1.8\nu4 rec9 0 1\n"
    )
    (data / "utt2spk").write_text("u1 alice\nu2 alice\nu3 bob\nu4 bob\n")
    (data / "text").write_text("u1 TURN ON THE LIGHT\nu2 OKAY\nu3 STOP\n")
    assert detect_layout(data) == "kaldi"
    corpus = load_corpus(data)
    assert corpus.ids == ["u1", "u2", "u3"]
    assert corpus["u1"].transcript == "turn on the light"
    assert corpus["u3"].duration == pytest.approx(1.6)
    assert len(corpus["u2"].load()) == 24000
    reasons = {p.where.rsplit("/", 1)[-1]: p.reason for p in corpus.problems}
    assert "piped" in reasons["wav.scp:3"] and "rec9" in reasons["segments:4"]


def test_kaldi_without_segments_uses_whole_recordings(tmp_path):
    write_wav(tmp_path / "a.wav")
    (tmp_path / "wav.scp").write_text(f"a {tmp_path / 'a.wav'}\n")
    (tmp_path / "utt2spk").write_text("a spk\n")
    corpus = load_corpus(tmp_path / "wav.scp")
    assert corpus.ids == ["a"] and corpus["a"].transcript == ""


def test_csv_manifest_reports_missing_file_with_line_number(tmp_path):
    for name in ("a", "b"):
        write_wav(tmp_path / "clips" / f"{name}.wav")
    (tmp_path / "manifest.csv").write_text(
        "path,text,speaker\nclips/a.wav,Hello there,s1\nclips/missing.wav,x,s1\n"
        "clips/b.wav,Bye,s2\nclips/b.wav,,\n"
    )
    assert detect_layout(tmp_path) == "manifest"
    corpus = load_corpus(tmp_path)
    assert corpus.ids == ["clips/a", "clips/b"]
    assert corpus["clips/a"].transcript == "hello there"
    wheres = [(p.where.rsplit("/", 1)[-1], p.reason) for p in corpus.problems]
    assert wheres == [
        ("manifest.csv:3", "audio file not found: clips/missing.wav"),
        ("manifest.csv:5", "missing field 'speaker'"),
    ]


def test_csv_manifest_without_required_columns(tmp_path):
    (tmp_path / "m.csv").write_text("file_name,words\nx.wav,hi\n")
    with pytest.raises(LayoutError, match=r"m\.csv:1: manifest header needs a path column"):
        load_corpus(tmp_path / "m.csv")


def test_jsonl_manifest(tmp_path):
    write_wav(tmp_path / "a.wav")
    rows = [
        json.dumps({"id": "u1", "audio": "a.wav", "transcript": "Hi!", "speaker_id": 7}),
        "{not json",
        json.dumps([1, 2]),
    ]
    (tmp_path / "data.jsonl").write_text("\n".join(rows) + "\n")
    corpus = load_corpus(tmp_path / "data.jsonl")
    assert corpus.ids == ["u1"] and corpus["u1"].speaker == "7"
    assert [p.where.rsplit(":", 1)[-1] for p in corpus.problems] == ["2", "3"]


def test_fsdd_layout_on_fixture(tmp_path):
    for digit, spk, take in ((0, "ann", 0), (7, "ann", 1), (3, "bob", 0)):
        write_wav(tmp_path / "recordings" / f"{digit}_{spk}_{take}.wav", rate=8000)
    assert detect_layout(tmp_path) == "fsdd"
    corpus = load_corpus(tmp_path)
    assert {u.id: u.transcript for u in corpus} == {
        "0_ann_0": "zero",
        "7_ann_1": "seven",
        "3_bob_0": "three",
    }
    assert corpus.summary().sample_rates == {8000: 3}


def test_real_fsdd(fsdd_root):
    corpus = load_corpus(fsdd_root)
    summary = corpus.summary()
    assert (summary.utterances, summary.speakers) == (3000, 6)
    assert {u.transcript for u in corpus} == {
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
    }
    assert summary.sample_rates == {8000: 3000}


def test_folder_with_pattern_and_sidecars(tmp_path):
    write_wav(tmp_path / "alice_turn_left.wav")
    write_wav(tmp_path / "bob_go_home.wav")
    write_wav(tmp_path / "README.wav")
    corpus = load_corpus(tmp_path, pattern="{speaker}_{text}.wav")
    assert {u.id: (u.speaker, u.transcript) for u in corpus} == {
        "alice_turn_left": ("alice", "turn left"),
        "bob_go_home": ("bob", "go home"),
    }
    assert "does not match pattern" in corpus.problems[0].reason

    nested = tmp_path / "nested"
    write_wav(nested / "carol" / "x1.wav")
    (nested / "carol" / "x1.txt").write_text("Good morning.")
    assert detect_layout(nested) == "folder"
    corpus = load_corpus(nested)
    assert corpus["carol/x1"].speaker == "carol"
    assert corpus["carol/x1"].transcript == "good morning"


def test_one_corrupt_file_among_twenty(tmp_path):
    for i in range(19):
        write_wav(tmp_path / f"{i % 10}_{('amy', 'ben')[i % 2]}_{i}.wav", seed=i)
    (tmp_path / "3_amy_99.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    corpus = load_corpus(tmp_path)
    assert len(corpus) == 19
    [problem] = corpus.problems
    assert problem.where.endswith("3_amy_99.wav") and "unreadable" in problem.reason
    with pytest.raises(CorpusError, match=r"(?s)1 bad entries.*3_amy_99\.wav"):
        load_corpus(tmp_path, strict=True)


def test_silent_and_short_files_are_left_out_with_reasons(tmp_path):
    import numpy as np

    write_wav(tmp_path / "1_amy_0.wav")
    write_wav(tmp_path / "2_amy_1.wav", np.zeros(16000, np.float32))
    write_wav(tmp_path / "3_amy_2.wav", seconds=0.02)
    corpus = load_corpus(tmp_path)
    assert corpus.ids == ["1_amy_0"]
    assert sorted(p.reason.split(" (")[0] for p in corpus.problems) == ["all silent", "too short"]


def test_unknown_layout_lists_known_layouts(tmp_path):
    write_wav(tmp_path / "whatever.wav")
    with pytest.raises(LayoutError) as info:
        load_corpus(tmp_path)
    for name in ("librispeech", "kaldi", "manifest", "fsdd", "folder", "--pattern"):
        assert name in str(info.value)


def test_empty_and_missing_corpora(tmp_path):
    with pytest.raises(LayoutError, match="no such file"):
        load_corpus(tmp_path / "nope")
    (tmp_path / "manifest.csv").write_text("path,speaker\nmissing.wav,s\n")
    with pytest.raises(CorpusError, match=r"(?s)no usable utterances.*manifest\.csv:2"):
        load_corpus(tmp_path)


_field = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=8)


@given(speaker=_field, words=st.lists(_field, min_size=1, max_size=4), take=st.integers(0, 999))
def test_pattern_regex_parses_what_it_formats(speaker, words, take):
    text = "_".join(words)
    name = f"{speaker}-{text}-{take}.wav"
    match = pattern_regex("{speaker}-{text}-{take}.wav").fullmatch(name)
    assert match is not None
    # Fields are lazy, so a '-' inside a field cannot occur here; all three round-trip.
    assert (match["speaker"], match["text"], match["take"]) == (speaker, text, str(take))


def test_pattern_regex_rejects_repeated_fields():
    with pytest.raises(LayoutError, match="appears twice"):
        pattern_regex("{speaker}_{speaker}.wav")


# --- command corpora: COMMAND/SPEAKER_NO_TAKE.wav, labels from folders and columns -------------

_COMMANDS = ("افتح", "اغلق", "stop", "go")  # Arabic "open", "close" beside English words
_SPEAKERS = ("s01", "s02", "s03")


def _command_corpus(root, commands=_COMMANDS, speakers=_SPEAKERS, takes=2):
    for no, command in enumerate(commands):
        for spk in speakers:
            for take in range(takes):
                write_wav(root / command / f"{spk}_{no}_{take}.wav", seconds=0.2, seed=no + take)
    return root


def test_command_folders_taken_as_speakers_warn_and_suggest_a_pattern(tmp_path):
    root = _command_corpus(tmp_path / "commands")
    assert detect_layout(root) == "folder"
    corpus = load_corpus(root)
    assert corpus.speakers == sorted(_COMMANDS)  # the misreading the warning is about
    [warning] = corpus.warnings
    assert warning.startswith(f"{root}: the 4 'speaker' folders look like labels")
    assert "'s01_'" in warning and "'{text}/{speaker}_{take}'" in warning
    assert corpus.summary().as_dict()["warnings"] == [warning]

    suggested = re.search(r"--pattern '([^']+)'", warning)[1]
    assert suggested == "{label}/{speaker}_{take}"
    fixed = load_corpus(root, pattern=suggested)
    assert fixed.warnings == () and fixed.problems == ()
    assert fixed.speakers == list(_SPEAKERS)
    assert {u.columns["label"] for u in fixed} == set(_COMMANDS)
    assert [u.columns["label"] for u in fixed.by_speaker()["s02"]].count("افتح") == 2
    u = fixed["افتح/s02_0_1"]
    assert (u.speaker, u.columns) == ("s02", {"label": "افتح", "speaker": "s02", "take": "0_1"})


def test_folder_names_as_transcripts(tmp_path):
    root = _command_corpus(tmp_path, commands=("افتح", "Stop"), takes=1)
    corpus = load_corpus(root, pattern="{text}/{speaker}_{take}")
    u = corpus["Stop/s03_1_0"]
    assert (u.speaker, u.raw_transcript, u.transcript) == ("s03", "Stop", "stop")
    assert corpus["افتح/s01_0_0"].raw_transcript == "افتح"
    assert corpus.summary().with_transcript == 6


def test_real_speaker_folders_do_not_warn(tmp_path):
    for spk in ("alice", "bob", "cy"):
        for i, words in enumerate(("turn left", "go home")):
            write_wav(tmp_path / spk / f"{spk}_{i}.wav", seconds=0.2)
            (tmp_path / spk / f"{spk}_{i}.txt").write_text(words)
            # One shared naming scheme ("take_1") recurs in every folder: not speakers of its own.
            write_wav(tmp_path / spk / f"take_{i}.wav", seconds=0.2)
            (tmp_path / spk / f"take_{i}.txt").write_text(words)
    corpus = load_corpus(tmp_path)
    assert corpus.speakers == ["alice", "bob", "cy"] and corpus.warnings == ()


def test_folders_each_holding_one_transcript_warn(tmp_path):
    for word in ("yes", "no"):
        for i in range(3):
            write_wav(tmp_path / word / f"{i}.wav", seconds=0.2)
            (tmp_path / word / f"{i}.txt").write_text(word.upper())
    [warning] = load_corpus(tmp_path).warnings
    assert "each of the 2 'speaker' folders holds a single transcript" in warning
    assert "--pattern '{label}/{speaker}_{take}'" in warning


def test_no_transcripts_at_all_warns(tmp_path):
    for spk in ("ann", "bob"):
        write_wav(tmp_path / spk / "x.wav", seconds=0.2)
    [warning] = load_corpus(tmp_path).warnings
    assert warning.startswith(f"{tmp_path}: the folder layout gave no transcripts")
    assert "{text}" in warning
    # A pattern says where the words are; leaving {text} out of it is the user's choice.
    assert load_corpus(tmp_path, pattern="{speaker}/{name}").warnings == ()


def test_wrong_pattern_names_the_files_seen_and_an_example(tmp_path):
    root = _command_corpus(tmp_path, takes=1)
    with pytest.raises(LayoutError) as info:
        load_corpus(root, pattern="{label}/{speaker}-{take}.wav")
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(root))
    assert "'{label}/{speaker}-{take}.wav' matched none of the 12 audio files" in message
    assert re.search(r"e\.g\. '[^/']+/s0\d_\d_0\.wav'", message)
    with pytest.raises(LayoutError, match=r"has no '/'.*the 12 audio files are in subfolders"):
        load_corpus(root, pattern="{speaker}_{take}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LayoutError, match="no audio files"):
        load_corpus(empty, layout="folder")


def test_pattern_without_suffix_matches_the_path_without_it(tmp_path):
    write_wav(tmp_path / "alice_turn_left.flac", seconds=0.2)
    [u] = load_corpus(tmp_path, pattern="{speaker}_{text}")
    assert (u.speaker, u.transcript, u.columns["text"]) == ("alice", "turn left", "turn_left")


def test_manifest_class_column_warns_and_can_be_the_text(tmp_path):
    for name in ("a", "b"):
        write_wav(tmp_path / f"{name}.wav", seconds=0.2)
    (tmp_path / "manifest.csv").write_text(
        "path,speaker,Class,age\na.wav,s1,افتح,31\nb.wav,s2,Stop,\n", encoding="utf-8"
    )
    corpus = load_corpus(tmp_path)
    [warning] = corpus.warnings
    assert warning.startswith(f"{tmp_path / 'manifest.csv'}: no text column")
    assert "'class'" in warning and "--text-column class" in warning
    assert 'label = "class"' in warning
    assert corpus["a"].columns == {"path": "a.wav", "speaker": "s1", "class": "افتح", "age": "31"}

    as_text = load_corpus(tmp_path, text_column="Class")
    assert as_text.warnings == ()
    texts = [(u.raw_transcript, u.transcript) for u in as_text]
    assert texts == [("افتح", "افتح"), ("Stop", "stop")]
    with pytest.raises(LayoutError, match=r"manifest\.csv: no column 'words'.*class, path"):
        load_corpus(tmp_path, text_column="words")
    with pytest.raises(LayoutError, match="applies to manifests, not the folder layout"):
        load_corpus(tmp_path, layout="folder", text_column="class")


def test_manifest_without_any_text_warns(tmp_path):
    write_wav(tmp_path / "a.wav", seconds=0.2)
    (tmp_path / "manifest.csv").write_text("path,speaker\na.wav,s1\n")
    [warning] = load_corpus(tmp_path).warnings
    assert "manifest layout gave no transcripts (no text/transcript" in warning


def test_jsonl_columns_keep_their_json_spelling(tmp_path):
    write_wav(tmp_path / "a.wav", seconds=0.2)
    row = {"audio": "a.wav", "speaker": 7, "word": "go", "take": 2, "ok": True, "tags": ["x"]}
    (tmp_path / "m.jsonl").write_text(json.dumps(row) + "\n")
    [u] = load_corpus(tmp_path / "m.jsonl")
    assert u.columns == {
        "audio": "a.wav", "speaker": "7", "word": "go", "take": "2", "ok": "true", "tags": '["x"]'
    }  # fmt: skip


def test_raw_transcripts_are_kept_beside_the_normalized_ones(tmp_path):
    libri = _librispeech(tmp_path / "libri")
    u = load_corpus(libri)["26-495-0002"]
    assert (u.raw_transcript, u.transcript) == ("HELLO WORLD NUMBER 2", "hello world number two")

    write_wav(tmp_path / "fsdd" / "7_ann_0.wav", rate=8000)
    write_wav(tmp_path / "fsdd" / "3_bob_1.wav", rate=8000)
    u = load_corpus(tmp_path / "fsdd")["7_ann_0"]
    assert (u.raw_transcript, u.transcript) == ("7", "seven")

    write_wav(tmp_path / "kaldi" / "r.wav")
    (tmp_path / "kaldi" / "wav.scp").write_text("u1 r.wav\n")
    (tmp_path / "kaldi" / "utt2spk").write_text("u1 s\n")
    (tmp_path / "kaldi" / "text").write_text("u1 Turn ON, please!\n")
    u = load_corpus(tmp_path / "kaldi")["u1"]
    assert (u.raw_transcript, u.transcript) == ("Turn ON, please!", "turn on please")

    write_wav(tmp_path / "side" / "ann" / "x.wav")
    (tmp_path / "side" / "ann" / "x.txt").write_text("  Good morning.\n")
    u = load_corpus(tmp_path / "side")["ann/x"]
    assert (u.raw_transcript, u.transcript) == ("Good morning.", "good morning")


def test_inspect_prints_the_warning_and_reads_a_text_column(tmp_path):
    from typer.testing import CliRunner

    from voxaudit.cli import app

    root = _command_corpus(tmp_path / "c", takes=1)
    result = CliRunner().invoke(app, ["data", "inspect", str(root)])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "{label}/{speaker}_{take}" in result.output
    write_wav(tmp_path / "m" / "a.wav", seconds=0.2)
    (tmp_path / "m" / "manifest.csv").write_text("path,speaker,command\na.wav,s1,go\n")
    args = ["data", "inspect", str(tmp_path / "m"), "--text-column", "command", "--json"]
    summary = json.loads(CliRunner().invoke(app, args).output)
    assert (summary["with_transcript"], summary["warnings"]) == (1, [])


_SEPARATORS = ("_", "-", ".", " ", "/", "__", "-_")
_VALUE = st.text(
    alphabet=string.ascii_letters + string.digits + "ابتثجحخدرسعفقكلمنهوي" + "éß",
    min_size=1,
    max_size=6,
)


@given(
    names=st.lists(
        st.sampled_from(["speaker", "text", "label", "take", "id", "name", "x1"]),
        min_size=1,
        max_size=5,
        unique=True,
    ),
    data=st.data(),
)
def test_pattern_regex_parses_random_fields_and_separators_back(names, data):
    values = [data.draw(_VALUE) for _ in names]
    separators = [data.draw(st.sampled_from(_SEPARATORS)) for _ in names[1:]]
    suffix = data.draw(st.sampled_from(["", ".wav"]))
    pattern = "{" + names[0] + "}"
    path = values[0]
    for name, value, sep in zip(names[1:], values[1:], separators, strict=True):
        pattern += sep + "{" + name + "}"
        path += sep + value
    match = pattern_regex(pattern + suffix).fullmatch(path + suffix)
    assert match is not None
    # Values hold no separator character, so each field ends exactly where its value does.
    assert match.groupdict() == dict(zip(names, values, strict=True))
