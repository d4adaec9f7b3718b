"""SLMIA-SR features: column count, no repeated columns, hand-computed values, chunk splitting."""

from __future__ import annotations

import math

import numpy as np
import pytest

from voxaudit.errors import VoxauditError
from voxaudit.mia.slmia import (
    INTER,
    INTRA,
    REPEATS,
    STATISTICS,
    SlmiaFeatures,
    _stats,
    slmia_columns,
    voice_chunks,
)

R2 = math.sqrt(2.0)


def test_103_columns_per_measure_all_distinct_names():
    columns, families = slmia_columns()
    assert len(columns) == 206 == len(set(columns))
    # The published code's 24 intra + 96 inter values per measure, less 17 that repeat others.
    assert len(INTRA) * len(STATISTICS) == 24 and len(INTER) * len(STATISTICS) == 96
    assert len(REPEATS) == 17
    assert families.count("intra") == 2 * 21 and families.count("inter") == 2 * 82
    assert len(slmia_columns(("cosine",))[0]) == 103


def _random_case(seed: int = 0):
    rng = np.random.default_rng(seed)

    def unit(n):
        x = rng.normal(size=(n, 6))
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    # Imposters with unequal voice counts: their per-imposter mean is then no repeat.
    return [unit(2), unit(3), unit(5)], {f"s{i}": unit(3 + i) for i in range(4)}


def test_left_out_columns_always_repeat_a_kept_one_and_kept_ones_never_do():
    imposters, speakers = _random_case()
    features = SlmiaFeatures().fit(imposters)
    for embeddings in speakers.values():
        for measure in ("cosine", "l2"):
            sets = {**features._intra(embeddings, measure), **features._inter(embeddings, measure)}
            for name, stat in REPEATS:
                # The whole set each repeated statistic summarizes: its matrix, or all pairs.
                base = {"to_others": "pairwise", "iutt_to_centroid_per_imp": "iutt_to_centroid"}
                whole = base.get(name.rsplit("_", 1)[0]) or name.split("_per_")[0]
                assert _stats(sets[name])[stat] == pytest.approx(_stats(sets[whole])[stat])
    table = features.transform(speakers)
    values = table.values
    for i in range(values.shape[1]):
        for j in range(i + 1, values.shape[1]):
            assert not np.allclose(values[:, i], values[:, j]), (
                table.columns[i],
                table.columns[j],
            )


def test_values_on_hand_made_embeddings():
    # A speaker at two orthogonal unit vectors; one imposter at their opposites.
    speaker = np.array([[1.0, 0.0], [0.0, 1.0]])
    table = SlmiaFeatures().fit([-speaker]).transform({"spk": speaker})
    value = dict(zip(table.columns, table.values[0], strict=True))
    # The centroid is (1, 1)/sqrt 2: cosine 1/sqrt 2 to both voices, L2 sqrt(2 - sqrt 2).
    assert value["cosine_to_centroid_mean"] == pytest.approx(1 / R2)
    assert value["cosine_to_centroid_std"] == pytest.approx(0.0)
    assert value["l2_to_centroid_max"] == pytest.approx(-math.sqrt(2 - R2))
    assert value["cosine_pairwise_mean"] == pytest.approx(0.0)
    assert value["l2_pairwise_min"] == pytest.approx(-R2)
    assert value["cosine_to_others_std_mean"] == pytest.approx(0.0)  # one other voice each
    # Imposter centroid -(1, 1)/sqrt 2: opposite the speaker's.
    assert value["cosine_icent_to_centroid_mean"] == pytest.approx(2.0)
    assert value["l2_icent_to_centroid_mean"] == pytest.approx(2.0)
    assert value["cosine_iutt_to_centroid_mean"] == pytest.approx(1 + 1 / R2)
    assert value["cosine_icent_to_utt_max"] == pytest.approx(1 + 1 / R2)
    # Imposter voices to the speaker's: 1 - cosine is [[2, 1], [1, 2]].
    assert value["cosine_iutt_to_utt_mean"] == pytest.approx(1.5)
    assert value["cosine_iutt_to_utt_std"] == pytest.approx(0.5)
    assert value["cosine_iutt_to_utt_max"] == pytest.approx(2.0)
    assert value["cosine_iutt_to_utt_per_utt_std_mean"] == pytest.approx(0.5)
    assert value["cosine_iutt_to_utt_per_imp_max_min"] == pytest.approx(2.0)
    assert value["l2_iutt_to_utt_min"] == pytest.approx(R2)
    assert "cosine_iutt_to_utt_per_utt_mean_mean" not in value  # a repeat of the overall mean


def test_a_speaker_needs_two_embeddings_and_known_measures():
    features = SlmiaFeatures().fit([np.eye(2)])
    with pytest.raises(VoxauditError, match=r"'lonely'.*at least 2 embeddings"):
        features.transform({"lonely": np.array([[1.0, 0.0]])})
    with pytest.raises(VoxauditError, match="measures"):
        SlmiaFeatures(("manhattan",)).fit([np.eye(2)])
    with pytest.raises(VoxauditError, match="imposter"):
        SlmiaFeatures().fit([])


def test_voice_chunks_are_fixed_length_overlapping_and_drop_the_tail():
    wave = np.arange(11, dtype=np.float32)
    chunks = voice_chunks(wave, sample_rate=10, seconds=0.4, overlap=0.5)
    assert [c.tolist() for c in chunks] == [
        [0, 1, 2, 3],
        [2, 3, 4, 5],
        [4, 5, 6, 7],
        [6, 7, 8, 9],
    ]
    chunks[0][0] = 99  # chunks are copies, not views of the voice
    assert wave[0] == 0
    assert len(voice_chunks(wave, 10, seconds=0.4, overlap=0.0)) == 2
    assert voice_chunks(wave[:3], 10, seconds=0.4) == []
    with pytest.raises(VoxauditError, match="overlap"):
        voice_chunks(wave, 10, seconds=0.4, overlap=1.0)
