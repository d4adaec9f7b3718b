"""CMU PocketSphinx as a black-box recognizer: transcripts and the decoder's own scores.

The ``pocketsphinx`` wheel ships its US English acoustic model, language model and
dictionary, so nothing is downloaded. Only ``transcribe`` and ``scores`` exist: an HMM
decoder gives no frame posteriors or gradients to expose, so access wrappers offer this model
at black-box level only, whatever level they are given. One decoder decodes one utterance at
a time: calls from several threads take turns (make one recognizer per thread to decode in
parallel).
"""

from __future__ import annotations

import math
import threading
from itertools import islice
from typing import Any, TypedDict

import numpy as np

from voxaudit.data.audio import resample
from voxaudit.data.text import normalize_transcript
from voxaudit.models.adapters import require
from voxaudit.models.base import Waveforms


class SphinxScores(TypedDict):
    """What the decoder reports for one utterance."""

    text: str  # normalized best hypothesis
    log_score: float  # natural log of the best path's score (acoustic + weighted LM)
    posterior: float  # the best hypothesis' posterior probability in the lattice
    nbest: list[str]  # distinct texts among the decoder's first n_best, ``text`` first


class PocketSphinxRecognizer:
    """PocketSphinx with its bundled en-us models; ``decoder_config`` overrides its settings."""

    def __init__(self, sample_rate: int = 16000, n_best: int = 5, **decoder_config: Any) -> None:
        pocketsphinx = require("pocketsphinx")
        self.sample_rate = sample_rate
        self.n_best = n_best
        # Decoder() without hmm/lm/dict uses the models inside the installed package.
        self._decoder = pocketsphinx.Decoder(**{"loglevel": "FATAL", **decoder_config})
        self._rate = int(self._decoder.config["samprate"])
        # The decoder holds the utterance in progress and its lattice: two threads in it at
        # once mix their audio or fail to start an utterance.
        self._lock = threading.Lock()

    def transcribe(self, waveforms: Waveforms) -> list[str]:
        """Normalized best hypothesis of each utterance."""
        texts = []
        for w in waveforms:
            with self._lock:
                best = self._decode(w)
            texts.append(normalize_transcript(getattr(best, "hypstr", "")))
        return texts

    def scores(self, waveforms: Waveforms) -> list[SphinxScores]:
        """Best hypothesis, its path score and posterior, and the n-best list per utterance."""
        results = []
        for w in waveforms:
            # The n-best list is read from the lattice of this decode, so both hold the lock.
            with self._lock:
                best = self._decode(w)
                if best is None:
                    results.append(
                        SphinxScores(text="", log_score=-math.inf, posterior=0.0, nbest=[])
                    )
                    continue
                alternatives = list(islice(self._decoder.nbest(), self.n_best))
            text = normalize_transcript(best.hypstr)
            texts = [normalize_transcript(h.hypstr) for h in alternatives if h is not None]
            results.append(
                SphinxScores(
                    text=text,
                    # The bindings return exp(log score); 0 means it underflowed.
                    log_score=math.log(best.score) if best.score > 0 else -math.inf,
                    posterior=float(best.prob),
                    nbest=list(dict.fromkeys([text, *texts]))[: self.n_best],
                )
            )
        return results

    def _decode(self, waveform: np.ndarray) -> Any:
        """Decode one whole utterance: the decoder's best hypothesis, None when there is none.

        The caller holds ``self._lock``.
        """
        samples = resample(np.asarray(waveform, dtype=np.float32), self.sample_rate, self._rate)
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        # The noise tracker and cepstral mean carry over between utterances, which makes a
        # transcript depend on what was decoded before; resetting them decodes each alone.
        self._decoder.reinit_feat()
        self._decoder.start_utt()
        if pcm:  # process_raw fails on an empty buffer
            self._decoder.process_raw(pcm, full_utt=True)
        self._decoder.end_utt()
        return self._decoder.hyp()
