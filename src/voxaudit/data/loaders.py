"""Corpus loaders for common on-disk layouts, with layout detection.

Every loader yields utterances plus problems (with file and line) instead of failing on the first
bad entry; :func:`load_corpus` then reads headers, optionally decodes and validates the audio, and
either drops bad files (reporting them) or, with ``strict``, fails listing all of them.
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

Found = Iterator["Utterance | Problem"]


@dataclass(frozen=True)
class Layout:
    name: str
    description: str
    read: Callable[[Path, str | None], Found]


def load_corpus(
    path: str | Path,
    layout: str | None = None,
    *,
    pattern: str | None = None,
    validate: bool = True,
    strict: bool = False,
    limits: AudioLimits = AudioLimits(),
    progress: bool = False,
) -> Corpus:
    """Load a corpus from disk, detecting its layout unless ``layout`` names one.

    Bad entries are left out and listed in ``corpus.problems``; ``strict`` raises instead.
    ``validate`` decodes every file to catch silent, NaN, clipped, too short or too long audio.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise LayoutError(f"{path}: no such file or directory")
    path = path.resolve()  # utterances keep absolute paths, valid from any working directory
    name = layout or ("folder" if pattern else detect_layout(path))
    if name not in LAYOUTS:
        raise LayoutError(f"unknown layout {name!r}; choose one of: {', '.join(LAYOUTS)}")
    found = list(LAYOUTS[name].read(path, pattern))
    problems = [item for item in found if isinstance(item, Problem)]
    listed = [item for item in found if isinstance(item, Utterance)]
    utterances = _with_headers(listed, problems, progress)
    corpus = Corpus(utterances, name=_corpus_name(path), layout=name, problems=problems)
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
    """Name the layout of ``path``; raise :class:`LayoutError` listing known ones if none fits."""
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


def _read_librispeech(root: Path, _pattern: str | None) -> Found:
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
            yield Utterance(utt_id, speaker, normalize_transcript(text), path=audio)
        for audio in _audio_files(folder, recursive=False):
            if audio.stem not in listed:
                yield Problem(str(audio), f"not listed in {transcript_file.name}", "warning")


# --- Kaldi data directory: wav.scp, utt2spk, text, optional segments ----------------------------


def _read_kaldi(path: Path, _pattern: str | None) -> Found:
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
            text = normalize_transcript(texts.get(utt, ""))
            yield Utterance(utt, speakers[utt][1], text, recordings[rec_id], start=start, end=end)
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


def _read_manifest(path: Path, _pattern: str | None) -> Found:
    if path.is_dir():
        path = next(path / n for n in MANIFEST_NAMES if (path / n).is_file())
    rows = _jsonl_rows(path) if path.suffix == ".jsonl" else _csv_rows(path)
    seen: set[str] = set()
    for line_no, row in rows:
        where = f"{path}:{line_no}"
        if isinstance(row, Problem):
            yield row
            continue
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
        text = normalize_transcript(_pick(row, _TEXT_COLUMNS) or "")
        yield Utterance(utt_id, speaker, text, path=audio)


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


# --- Folders of audio named by a pattern (FSDD is one such folder) ------------------------------


def _read_fsdd(path: Path, _pattern: str | None) -> Found:
    root = _fsdd_root(path)
    if root is None:
        raise LayoutError(f"{path}: no files named like {FSDD_PATTERN}")
    yield from _read_folder(root, FSDD_PATTERN)


def _read_folder(root: Path, pattern: str | None) -> Found:
    regex = pattern_regex(pattern or FOLDER_PATTERN)
    recursive = "/" in (pattern or FOLDER_PATTERN)
    for audio in _audio_files(root, recursive):
        relative = audio.relative_to(root).as_posix()
        match = regex.fullmatch(relative) or regex.fullmatch(audio.relative_to(root).stem)
        if match is None:
            yield Problem(str(audio), f"name does not match pattern {pattern or FOLDER_PATTERN!r}")
            continue
        fields = match.groupdict()
        yield Utterance(
            fields.get("id") or audio.relative_to(root).with_suffix("").as_posix(),
            fields.get("speaker") or "unknown",
            _folder_transcript(fields, audio),
            path=audio,
        )


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """Compile a filename pattern like ``{digit}_{speaker}_{take}.wav`` into a regex.

    Fields: ``speaker``, ``text`` (underscores read as spaces), ``digit`` (one digit, spoken as its
    word), ``id``; any other ``{name}`` matches and is ignored. A pattern without a suffix matches
    the name without its suffix.
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


def _folder_transcript(fields: dict[str, str], audio: Path) -> str:
    if fields.get("text"):
        return normalize_transcript(fields["text"].replace("_", " "))
    if fields.get("digit"):
        return digit_word(fields["digit"])
    sidecar = _first_existing(audio.with_suffix(""), (".txt", ".lab"))
    return normalize_transcript(sidecar.read_text(encoding="utf-8")) if sidecar else ""


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
