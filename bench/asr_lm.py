"""Held-out CER of a trained CTC model with a character language model fused into beam search.

Usage: python bench/asr_lm.py --run RUN_DIR [the corpus options of bench/asr_cer.py]
       [--order 8] [--beam 16] [--threads 1] [--out result.json]

RUN_DIR is a model kept by ``bench/asr_cer.py --save RUN_DIR``; give the same corpus options
(--speakers, --per-speaker, --held-out, --seed or --corpus) so that the same speakers are held
out. The n-gram is fitted on the training utterances' transcripts only. The held-out speakers
are split in two halves (sorted); the language-model weight and length bonus that one half
chooses decode the other (two-fold cross-fitting), so every held-out utterance is scored by a
setting chosen without its speaker. Greedy, beam and beam + LM CER over all held-out
utterances, each with a 95% interval from resampling speakers, and the LM's gain over beam
alone (paired).
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import jiwer
import numpy as np
from scipy.stats import bootstrap

from heldout import add_options, report, split_speakers
from voxaudit.data.corpus import Utterance
from voxaudit.data.text import normalize_transcript
from voxaudit.models.checkpoints import load_model
from voxaudit.models.ctc import CTCModel, ctc_greedy_decode, ctc_prefix_beam_search
from voxaudit.models.lm import CharNgramLM, LMFusion
from voxaudit.models.recognizer import Recognizer, cer
from voxaudit.progress import track

WEIGHTS = (0.3, 0.5, 0.8, 1.0, 1.5)
BONUSES = (0.0, 1.0, 2.0, 3.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="the model's run directory")
    parser.add_argument("--order", type=int, default=8, help="n-gram order (characters)")
    parser.add_argument("--beam", type=int, default=16)
    add_options(parser, held_out=20, lr=None)
    args = parser.parse_args()
    corpus, train, held_out = split_speakers(args)
    model = load_model(args.run)
    if not isinstance(model, CTCModel):
        raise SystemExit(f"{args.run}: a language model fuses into CTC beam search only")
    tokens = model.tokenizer
    lm = CharNgramLM(tokens.ctc_vocab_size, args.order).fit(
        tokens.encode(u.transcript) for u in train
    )
    halves = _halves(held_out)
    frames = [_frames(model, half) for half in halves]

    def decode(half: int, fusion: LMFusion | None) -> list[str]:
        search = (ctc_prefix_beam_search(f, args.beam, tokens.blank, fusion) for f in frames[half])
        return [tokens.decode(ids) for ids in search]

    # Every weight and bonus decoded on each half; each half is then scored with the setting
    # the *other* half chose (two-fold cross-fitting), so no choice sees the speakers it scores.
    grid = list(itertools.product(WEIGHTS, BONUSES))
    decoded = {
        (half, setting): decode(half, LMFusion(lm, *setting))
        for half, setting in track(
            list(itertools.product(range(2), grid)), "language-model weights, each half"
        )
    }
    grid_cer = {
        key: round(cer([u.transcript for u in halves[key[0]]], hypotheses), 4)
        for key, hypotheses in decoded.items()
    }
    chosen = [min(grid, key=lambda setting: grid_cer[half, setting]) for half in range(2)]
    hypotheses = {
        "greedy": [
            tokens.decode(ctc_greedy_decode(f, tokens.blank)) for half in frames for f in half
        ],
        "beam": decode(0, None) + decode(1, None),
        "beam_lm": decoded[0, chosen[1]] + decoded[1, chosen[0]],
    }
    test = halves[0] + halves[1]
    report(args, {
        "run": str(args.run),
        "corpus": corpus.name if args.corpus is not None else "synthetic",
        "lm_order": args.order,
        "lm_train_transcripts": len(train),
        # How much of the held-out text the LM's text covers: a small grammar covers most.
        "held_out_words_seen_in_training": _word_coverage(train, held_out),
        "beam": args.beam,
        "halves": [sorted({u.speaker for u in half}) for half in halves],
        "test_utterances": len(test),
        "cer_by_half_weight_and_bonus": [
            {f"{w} {b}": grid_cer[half, (w, b)] for w, b in grid} for half in range(2)
        ],
        "weight_and_bonus_chosen_by_half": chosen,
        **{f"test_cer_{name}": _cer_with_interval(test, hyps) for name, hyps in hypotheses.items()},
        "test_cer_lm_minus_beam": _cer_with_interval(
            test, hypotheses["beam_lm"], baseline=hypotheses["beam"]
        ),
    })  # fmt: skip


def _cer_with_interval(
    utterances: list[Utterance], hypotheses: list[str], baseline: list[str] | None = None
) -> dict[str, float | None]:
    """Corpus CER (or its difference from ``baseline``'s on the same utterances) with a 95%
    percentile interval from resampling speakers, since one speaker's errors go together."""
    speakers = sorted({u.speaker for u in utterances})
    row = {s: i for i, s in enumerate(speakers)}
    # Per speaker: reference characters, edits, and the baseline's edits (none without one).
    chars, edits, baseline_edits = np.zeros((3, len(speakers)))
    for i, u in enumerate(utterances):
        chars[row[u.speaker]] += len(normalize_transcript(u.transcript))
        edits[row[u.speaker]] += _edits(u.transcript, hypotheses[i])
        if baseline is not None:
            baseline_edits[row[u.speaker]] += _edits(u.transcript, baseline[i])

    def statistic(index: np.ndarray) -> float:
        index = index.astype(int)
        return (edits[index].sum() - baseline_edits[index].sum()) / chars[index].sum()

    value = statistic(np.arange(len(speakers)))
    if len(speakers) < 2:
        return {"value": round(float(value), 4), "low": None, "high": None}
    interval = bootstrap(
        (np.arange(len(speakers)),), statistic, vectorized=False, n_resamples=2000,
        method="percentile", random_state=0,
    ).confidence_interval  # fmt: skip
    return {
        "value": round(float(value), 4),
        "low": round(float(interval.low), 4),
        "high": round(float(interval.high), 4),
    }


def _word_coverage(train: list[Utterance], held_out: list[Utterance]) -> float:
    """Share of held-out word tokens that occur in some training transcript."""
    seen = {w for u in train for w in normalize_transcript(u.transcript).split()}
    words = [w for u in held_out for w in normalize_transcript(u.transcript).split()]
    return round(sum(w in seen for w in words) / max(1, len(words)), 4)


def _edits(reference: str, hypothesis: str) -> int:
    """Character substitutions, deletions and insertions (jiwer), both texts normalized."""
    out = jiwer.process_characters(
        normalize_transcript(reference), normalize_transcript(hypothesis)
    )
    return out.substitutions + out.deletions + out.insertions


def _halves(held_out: list[Utterance]) -> tuple[list[Utterance], list[Utterance]]:
    """The first and second half of the held-out speakers (sorted), or of the utterances when
    a single speaker is held out."""
    speakers = sorted({u.speaker for u in held_out})
    if len(speakers) == 1:
        middle = len(held_out) // 2
        return held_out[:middle], held_out[middle:]
    first = set(speakers[: len(speakers) // 2])
    return (
        [u for u in held_out if u.speaker in first],
        [u for u in held_out if u.speaker not in first],
    )


def _frames(model: CTCModel, utterances: list[Utterance]) -> list[np.ndarray]:
    """Frame log-probabilities ``[T', V]`` of each utterance, computed once for every decode."""
    recognizer = Recognizer(model, batch_size=32)
    return recognizer.log_probs([u.load(model.sample_rate) for u in utterances])


if __name__ == "__main__":
    main()
