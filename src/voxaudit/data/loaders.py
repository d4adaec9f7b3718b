"""Corpus loaders for common on-disk layouts, with layout detection.

Every loader yields utterances plus problems (with file and line) instead of failing on the first
bad entry; :func:`load_corpus` then reads headers, optionally decodes and validates the audio, and
either drops bad files (reporting them) or, with ``strict``, fails listing all of them. It also
warns when the corpus as a whole looks misread (folders that look like labels rather than
speakers, no transcripts), suggesting the ``pattern`` or ``text_column`` that would fit.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from voxaudit.data.audio import AudioError, AudioInfo, AudioLimits, audio_info
from voxaudit.data.corpus import Corpus, Problem, Utterance
from voxaudit.data.text import digit_word, normalize_transcript
from voxaudit.errors import CorpusError, LayoutError
from voxaudit.progress import track

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif")
MANIFEST_NAMES = ("manifest.csv", "manifest.jsonl")
FSDD_PATTERN = "{digit}_{speaker}_{take}.wav"
FOLDER_PATTERN = "{speaker}/{name}"

# Accepted column names in manifests, first match wins.
_PATH_COLUMNS = ("path", "audio", "audio_path", "file", "filename", "wav")
_TEXT_COLUMNS = ("text", "transcript", "sentence", "transcription")
_SPEAKER_COLUMNS = ("speaker", "speaker_id", "spk", "client_id")
# Columns that usually hold a class rather than a sentence; a manifest with one of these and no
# text column gets a warning saying how to use it.
_LABEL_COLUMNS = ("label", "class", "word", "command")
# Separators between a speaker prefix and the rest of a file name, for the label-folder warning.
_PREFIX_SEPARATORS = ("_", "-")

Found = Iterator["Utterance | Problem"]


@dataclass(frozen=True)
class ReadOptions:
    """What the caller said about the layout: a folder's pattern, a manifest's text column."""

    pattern: str | None = None
    text_column: str | None = None


@dataclass(frozen=True)
class Layout:
    name: str
    description: str
    read: Callable[[Path, ReadOptions], Found]


def load_corpus(
    path: str | Path,
    layout: str | None = None,
    *,
    pattern: str | None = None,
    text_column: str | None = None,
    validate: bool = True,
    strict: bool = False,
    limits: AudioLimits = AudioLimits(),
    progress: bool = False,
) -> Corpus:
    """Load a corpus from disk, detecting its layout unless ``layout`` names one.

    Bad entries are left out and listed in ``corpus.problems``; ``strict`` raises instead.
    What looks misread about the corpus as a whole is listed in ``corpus.warnings``.

    Parameters
    ----------
    path : a corpus folder, a manifest (``.csv``/``.jsonl``) or a Kaldi ``wav.scp``.
    layout : one of :data:`LAYOUTS`; detected when omitted (``folder`` when ``pattern`` is given).
    pattern : folder layout: where the fields sit in each file's path relative to ``path``, e.g.
        ``{label}/{speaker}_{take}`` (see :func:`pattern_regex` for the fields).
    text_column : manifest layout: the column holding the transcript, instead of the first of
        text, transcript, sentence, transcription.
    validate : decode every file to catch silent, NaN, clipped, too short or too long audio.
    strict : raise listing every bad entry instead of leaving them out.
    limits : what counts as too short, too long or clipped.
    progress : show progress bars.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise LayoutError(f"{path}: no such file or directory")
    path = path.resolve()  # utterances keep absolute paths, valid from any working directory
    name = layout or ("folder" if pattern else detect_layout(path))
    if name not in LAYOUTS:
        raise LayoutError(f"unknown layout {name!r}; choose one of: {', '.join(LAYOUTS)}")
    if text_column and name != "manifest":
        raise LayoutError(f"{path}: a text column applies to manifests, not the {name} layout")
    options = ReadOptions(pattern, text_column)
    found = list(LAYOUTS[name].read(path, options))
    problems = [item for item in found if isinstance(item, Problem)]
    listed = [item for item in found if isinstance(item, Utterance)]
    utterances = _with_headers(listed, problems, progress)
    warnings = _corpus_warnings(path, name, options, utterances)
    corpus = Corpus(utterances, _corpus_name(path), name, problems, warnings)
    if validate:
        corpus = corpus.validate(limits, progress=progress)
    errors = [p for p in corpus.problems if p.severity == "error"]
    if strict and errors:
        listing = "\n".join(f"  {p}" for p in errors[:50])
        raise CorpusError(f"{path}: {len(errors)} bad entries (strict mode):\n{listing}")
    if len(corpus) == 0:
        listing = "".join(f"\n  {p}" for p in errors[:10])
        raise CorpusError(f"{path}: no usable utterances ({name} layout){listing}")
    return corpus


def detect_layout(path: Path) -> str:
    """Name the layout of ``path``; raise :class:`LayoutError` listing known ones if none fits.

    Parameters
    ----------
    path : an existing corpus folder or file.
    """
    if path.is_file():
        if path.suffix in (".csv", ".jsonl"):
            return "manifest"
        if path.name == "wav.scp":
            return "kaldi"
    elif (path / "wav.scp").is_file():
        return "kaldi"
    elif any((path / n).is_file() for n in MANIFEST_NAMES):
        return "manifest"
    elif next(path.rglob("*.trans.txt"), None) is not None:
        return "librispeech"
    elif _fsdd_root(path) is not None:
        return "fsdd"
    elif any(_audio_files(sub, recursive=False) for sub in path.iterdir() if sub.is_dir()):
        return "folder"
    known = "\n".join(f"  {lay.name:<12} {lay.description}" for lay in LAYOUTS.values())
    raise LayoutError(
        f"{path}: not a corpus layout voxaudit understands. Known layouts:\n{known}\n"
        "For a flat folder of audio, give --pattern, e.g. '{speaker}_{text}.wav'."
    )


# --- LibriSpeech: SPK/CHAPTER/SPK-CHAPTER-UTT.flac with SPK-CHAPTER.trans.txt -------------------


def _read_librispeech(root: Path, _options: ReadOptions) -> Found:
    for transcript_file in sorted(root.rglob("*.trans.txt")):
        folder = transcript_file.parent
        listed: set[str] = set()
        for line_no, line in _numbered_lines(transcript_file):
            utt_id, _, text = line.partition(" ")
            listed.add(utt_id)
            audio = _first_existing(folder / utt_id, AUDIO_SUFFIXES)
            if audio is None:
                yield Problem(f"{transcript_file}:{line_no}", f"no audio file for {utt_id}")
                continue
            speaker = utt_id.split("-")[0]
            # LibriSpeech is English: any digit in its text is spelled as an English word.
            transcript = normalize_transcript(text, language="en")
            yield Utterance(utt_id, speaker, transcript, path=audio, raw_transcript=text)
        for audio in _audio_files(folder, recursive=False):
            if audio.stem not in listed:
                yield Problem(str(audio), f"not listed in {transcript_file.name}", "warning")


# --- Kaldi data directory: wav.scp, utt2spk, text, optional segments ----------------------------


def _read_kaldi(path: Path, _options: ReadOptions) -> Found:
    root = path.parent if path.is_file() else path
    if not (root / "utt2spk").is_file():
        raise LayoutError(f"{root}: Kaldi data directory without utt2spk")
    recordings: dict[str, Path] = {}
    for where, rec_id, value in _kaldi_table(root / "wav.scp"):
        if value.endswith("|"):
            yield Problem(where, f"{rec_id}: piped wav.scp commands are not supported")
        elif (audio := _resolve(value, root)) is None:
            yield Problem(where, f"{rec_id}: audio file not found: {value}")
        else:
            recordings[rec_id] = audio
    speakers = {utt: (where, spk) for where, utt, spk in _kaldi_table(root / "utt2spk")}
    texts = {utt: text for _, utt, text in _kaldi_table(root / "text")}
    if (root / "segments").is_file():
        segments = {}
        for where, utt, value in _kaldi_table(root / "segments"):
            try:
                rec_id, start, end = value.split()
                segments[utt] = (where, rec_id, float(start), float(end))
            except ValueError:
                yield Problem(where, f"{utt}: expected 'utt rec start end', got {value!r}")
    else:
        segments = {rec: (f"{root / 'wav.scp'}", rec, 0.0, None) for rec in recordings}
    for utt, (where, rec_id, start, end) in segments.items():
        if utt not in speakers:
            yield Problem(where, f"{utt}: missing from utt2spk")
        elif rec_id in recordings:
            raw = texts.get(utt, "")
            yield Utterance(
                utt,
                speakers[utt][1],
                normalize_transcript(raw),
                recordings[rec_id],
                start=start,
                end=end,
                raw_transcript=raw,
            )
        elif end is not None:
            yield Problem(where, f"{utt}: recording {rec_id} is not in wav.scp")


def _kaldi_table(path: Path) -> Iterator[tuple[str, str, str]]:
    """``(file:line, key, rest)`` for each line of a Kaldi table; a missing file yields nothing."""
    if not path.is_file():
        return
    for line_no, line in _numbered_lines(path):
        key, _, value = line.partition(" ")
        yield f"{path}:{line_no}", key, value.strip()


# --- CSV / JSONL manifests: path, text, speaker (and optional id, duration) ---------------------


def _read_manifest(path: Path, options: ReadOptions) -> Found:
    path = _manifest_file(path)
    text_columns = (options.text_column.lower(),) if options.text_column else _TEXT_COLUMNS
    rows = _jsonl_rows(path) if path.suffix == ".jsonl" else _csv_rows(path)
    seen: set[str] = set()
    all_columns: set[str] = set()
    for line_no, row in rows:
        where = f"{path}:{line_no}"
        if isinstance(row, Problem):
            yield row
            continue
        all_columns.update(row)
        audio_field = _pick(row, _PATH_COLUMNS)
        speaker = _pick(row, _SPEAKER_COLUMNS)
        if not audio_field or not speaker:
            missing = "path" if not audio_field else "speaker"
            yield Problem(where, f"missing field '{missing}'")
            continue
        audio = _resolve(audio_field, path.parent)
        if audio is None:
            yield Problem(where, f"audio file not found: {audio_field}")
            continue
        utt_id = str(row.get("id") or Path(audio_field).with_suffix("").as_posix())
        if utt_id in seen:
            yield Problem(where, f"duplicate id {utt_id!r}")
            continue
        seen.add(utt_id)
        raw = _pick(row, text_columns) or ""
        yield Utterance(
            utt_id,
            speaker,
            normalize_transcript(raw),
            path=audio,
            raw_transcript=raw,
            columns={k: _cell(v) for k, v in row.items() if v is not None},
        )
    if options.text_column and text_columns[0] not in all_columns:
        raise LayoutError(
            f"{path}: no column {options.text_column!r} for the text; "
            f"columns: {', '.join(sorted(all_columns)) or 'none'}"
        )


def _manifest_file(path: Path) -> Path:
    """The manifest itself, given it or the folder holding it."""
    if path.is_dir():
        return next(path / n for n in MANIFEST_NAMES if (path / n).is_file())
    return path


def _csv_rows(path: Path) -> Iterator[tuple[int, dict | Problem]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        if not set(columns) & set(_PATH_COLUMNS) or not set(columns) & set(_SPEAKER_COLUMNS):
            raise LayoutError(
                f"{path}:1: manifest header needs a path column ({'/'.join(_PATH_COLUMNS)}) and "
                f"a speaker column ({'/'.join(_SPEAKER_COLUMNS)}); found {columns}"
            )
        for raw in reader:
            yield reader.line_num, {str(k).strip().lower(): v for k, v in raw.items() if k}


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict | Problem]]:
    for line_no, line in _numbered_lines(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield line_no, Problem(f"{path}:{line_no}", f"invalid JSON ({exc.msg})")
            continue
        if not isinstance(row, dict):
            yield line_no, Problem(f"{path}:{line_no}", "expected a JSON object")
            continue
        yield line_no, {str(k).lower(): v for k, v in row.items()}


def _pick(row: dict, names: tuple[str, ...]) -> str | None:
    for name in names:
        value = row.get(name)
        if value not in (None, ""):
            return str(value).strip()
    return None


def _cell(value: object) -> str:
    """A manifest value as text: JSON numbers, booleans and lists keep their JSON spelling."""
    return value.strip() if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


# --- Folders of audio named by a pattern (FSDD is one such folder) ------------------------------


def _read_fsdd(path: Path, _options: ReadOptions) -> Found:
    root = _fsdd_root(path)
    if root is None:
        raise LayoutError(f"{path}: no files named like {FSDD_PATTERN}")
    # FSDD is English: any text read for it is normalized as English, digits spelled as words.
    yield from _read_folder(root, ReadOptions(FSDD_PATTERN), language="en")


def _read_folder(root: Path, options: ReadOptions, language: str | None = None) -> Found:
    pattern = options.pattern or FOLDER_PATTERN
    regex = pattern_regex(pattern)
    files = _audio_files(root, recursive="/" in pattern)
    if not files:
        nested = _audio_files(root, recursive=True)
        if not nested:
            raise LayoutError(f"{root}: no audio files ({', '.join(AUDIO_SUFFIXES)}) under it")
        raise LayoutError(
            f"{root}: pattern {pattern!r} has no '/', so it reads only files directly in the "
            f"folder, and there are none; the {len(nested)} audio files are in subfolders, "
            f"e.g. {nested[0].relative_to(root).as_posix()!r}"
        )
    with_suffix = Path(pattern).suffix.lower() in AUDIO_SUFFIXES
    matched = 0
    for audio in files:
        relative = audio.relative_to(root)
        name = relative if with_suffix else relative.with_suffix("")
        match = regex.fullmatch(name.as_posix())
        if match is None:
            yield Problem(str(audio), f"name does not match pattern {pattern!r}")
            continue
        matched += 1
        fields = match.groupdict()
        raw, transcript = _folder_transcript(fields, audio, language)
        yield Utterance(
            fields.get("id") or relative.with_suffix("").as_posix(),
            fields.get("speaker") or "unknown",
            transcript,
            path=audio,
            raw_transcript=raw,
            columns=fields,
        )
    if not matched:
        raise LayoutError(
            f"{root}: pattern {pattern!r} matched none of the {len(files)} audio files, "
            f"e.g. {files[0].relative_to(root).as_posix()!r}"
        )


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """Compile a filename pattern like ``{digit}_{speaker}_{take}.wav`` into a regex.

    Fields: ``speaker``, ``text`` (the transcript; underscores read as spaces), ``digit`` (one
    digit, spoken as its English word), ``id``; any other ``{name}`` (``label``, ``take``...)
    matches and is kept, like every field, in the utterance's ``columns``, where a classifier's
    ``label`` can name it. Fields match within one path part, shortest first, so a field
    followed by ``_`` ends at the first ``_``. A ``/`` matches a subfolder, as in
    ``{label}/{speaker}_{take}``. A pattern without an audio suffix matches the path without it.

    Parameters
    ----------
    pattern : the pattern; each field may appear once.
    """
    parts = re.split(r"\{(\w+)\}", pattern)
    regex, used = "", set()
    for i, part in enumerate(parts):
        if i % 2 == 0:
            regex += re.escape(part)
        elif part in used:
            raise LayoutError(f"pattern {pattern!r}: field {{{part}}} appears twice")
        else:
            used.add(part)
            body = r"\d" if part == "digit" else r"[^/]+?"
            regex += f"(?P<{part}>{body})"
    return re.compile(regex)


def _folder_transcript(
    fields: dict[str, str], audio: Path, language: str | None
) -> tuple[str, str]:
    """The raw and the normalized transcript of a file: its text or digit field, or a sidecar."""
    if fields.get("text"):
        raw = fields["text"].replace("_", " ")
    elif fields.get("digit"):
        return fields["digit"], digit_word(fields["digit"])
    else:
        sidecar = _first_existing(audio.with_suffix(""), (".txt", ".lab"))
        raw = sidecar.read_text(encoding="utf-8").strip() if sidecar else ""
    return raw, normalize_transcript(raw, language=language)


def _fsdd_root(path: Path) -> Path | None:
    name = re.compile(r"\d_[A-Za-z]+_\d+\.wav")
    for root in (path, path / "recordings"):
        files = _audio_files(root, recursive=False) if root.is_dir() else []
        if files and sum(bool(name.fullmatch(f.name)) for f in files) >= 0.8 * len(files):
            return root
    return None


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("librispeech", "SPK/CHAPTER/*.flac with SPK-CHAPTER.trans.txt", _read_librispeech),
        Layout("kaldi", "data dir with wav.scp, utt2spk, text (optional segments)", _read_kaldi),
        Layout("manifest", "CSV or JSONL with path, text, speaker columns", _read_manifest),
        Layout("fsdd", "Free Spoken Digit Dataset: {digit}_{speaker}_{take}.wav", _read_fsdd),
        Layout("folder", "audio named by --pattern (default {speaker}/{name})", _read_folder),
    )
}


# --- warnings about the corpus as a whole ---------------------------------------------------------

_NO_TRANSCRIPT_HINTS = {
    "folder": " (no {text} in the pattern, no .txt/.lab files beside the audio); if folder or "
    "file names hold the words, give --pattern with a {text} field, e.g. '{text}/{speaker}_{take}'",
    "manifest": f" (no {'/'.join(_TEXT_COLUMNS)} column with text)",
    "kaldi": " (no 'text' file)",
}


def _corpus_warnings(
    path: Path, layout: str, options: ReadOptions, utterances: list[Utterance]
) -> list[str]:
    """One line per thing that looks misread about the corpus, each saying what would fit."""
    if not utterances:
        return []
    warnings = []
    if layout == "folder" and options.pattern is None:
        warnings += _label_folder_warnings(path, utterances)
    if layout == "manifest" and options.text_column is None:
        warnings += _label_column_warnings(_manifest_file(path), utterances)
    if not any(u.transcript for u in utterances):
        emptied = next((u for u in utterances if u.raw_transcript), None)
        if emptied is not None:
            warnings.append(
                f"{path}: every transcript is empty once normalized, "
                f"e.g. {emptied.raw_transcript!r} of {emptied.source}"
            )
        elif options.pattern is None and not warnings:
            hint = _NO_TRANSCRIPT_HINTS.get(layout, "")
            warnings.append(f"{path}: the {layout} layout gave no transcripts{hint}")
    return warnings


def _label_folder_warnings(root: Path, utterances: list[Utterance]) -> list[str]:
    """Warn when the ``{speaker}/{name}`` folders look like classes (command words) instead.

    Two signs: the same file-name prefixes (``s01_...``) recur across folders, as when every
    speaker recorded every command; or every folder's files share a single transcript.
    """
    folders: dict[str, list[Utterance]] = {}
    for u in utterances:
        folders.setdefault(u.speaker, []).append(u)
    if len(folders) < 2:
        return []
    for sep in _PREFIX_SEPARATORS:
        prefixed = [(u, stem.split(sep, 1)[0]) for u in utterances if sep in (stem := _stem(u))]
        spread: dict[str, set[str]] = {}
        for u, prefix in prefixed:
            spread.setdefault(prefix, set()).add(u.speaker)
        recurring = {prefix for prefix, where in spread.items() if len(where) > 1}
        covered = sum(prefix in recurring for _, prefix in prefixed)
        # Two or more recurring prefixes: one alone is a naming scheme ("take_1"), not speakers.
        if len(recurring) > 1 and covered >= 0.8 * len(utterances):
            prefix = max(sorted(recurring), key=lambda p: len(spread[p]))
            shown = ", ".join(f"{f}/" for f in sorted(spread[prefix])[:2])
            return [
                f"{root}: the {len(folders)} 'speaker' folders look like labels: file names "
                f"start with speakers of their own ({prefix + sep!r}... in "
                f"{len(spread[prefix])} folders, e.g. {shown}); give {_label_pattern(sep)}, "
                f"or '{{text}}/{{speaker}}{sep}{{take}}' if the folder names are the words spoken"
            ]
    texts = {folder: {u.raw_transcript for u in utts} for folder, utts in folders.items()}
    if len(utterances) > len(folders) and all(len(t) == 1 and "" not in t for t in texts.values()):
        folder = next(iter(texts))
        return [
            f"{root}: each of the {len(folders)} 'speaker' folders holds a single transcript "
            f"(e.g. {folder}/ only {next(iter(texts[folder]))!r}): the folders look like labels; "
            f"if the file names hold the speaker, give {_label_pattern('_')}"
        ]
    return []


def _label_column_warnings(manifest: Path, utterances: list[Utterance]) -> list[str]:
    """Warn when a manifest has no text column but one that reads like a class."""
    columns = set().union(*(u.columns for u in utterances))
    named = [c for c in _LABEL_COLUMNS if c in columns]
    if columns & set(_TEXT_COLUMNS) or not named:
        return []
    listed = ", ".join(repr(c) for c in named)
    return [
        f"{manifest}: no text column ({'/'.join(_TEXT_COLUMNS)}) but {listed}: use it as the "
        f"transcript with --text-column {named[0]} (data inspect) or text_column = "
        f'"{named[0]}" in [corpus] (an audit config), or as a classifier\'s classes with '
        f'label = "{named[0]}" in [model]'
    ]


def _label_pattern(sep: str) -> str:
    return f"--pattern '{{label}}/{{speaker}}{sep}{{take}}' (a classifier's label = \"label\")"


def _stem(u: Utterance) -> str:
    assert u.path is not None
    return u.path.stem


# --- shared helpers ------------------------------------------------------------------------------


def _with_headers(
    utterances: list[Utterance], problems: list[Problem], progress: bool
) -> list[Utterance]:
    """Fill in native rate and duration from file headers; unreadable files become problems."""
    infos: dict[Path, AudioInfo | AudioError] = {}
    kept = []
    for u in track(utterances, "reading headers", enabled=progress):
        assert u.path is not None
        if u.path not in infos:
            try:
                infos[u.path] = audio_info(u.path)
            except AudioError as exc:
                infos[u.path] = exc
        info = infos[u.path]
        if isinstance(info, AudioError):
            problems.append(Problem(str(u.path), str(info).removeprefix(f"{u.path}: ")))
            continue
        end = info.duration if u.end is None else min(u.end, info.duration)
        kept.append(replace(u, sample_rate=info.sample_rate, duration=max(0.0, end - u.start)))
    return kept


def _numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if line.strip():
                yield line_no, line.strip()


def _audio_files(folder: Path, recursive: bool) -> list[Path]:
    files = folder.rglob("*") if recursive else folder.glob("*")
    return sorted(f for f in files if f.suffix.lower() in AUDIO_SUFFIXES and f.is_file())


def _first_existing(stem: Path, suffixes: tuple[str, ...]) -> Path | None:
    return next((p for s in suffixes if (p := stem.with_name(stem.name + s)).is_file()), None)


def _resolve(value: str, base: Path) -> Path | None:
    candidate = Path(value).expanduser()
    for p in (candidate, base / candidate) if not candidate.is_absolute() else (candidate,):
        if p.is_file():
            return p.resolve() if p is candidate else p
    return None


def _corpus_name(path: Path) -> str:
    return (path.parent if path.is_file() else path).resolve().name or "corpus"
