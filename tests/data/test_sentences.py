import re
from importlib import resources

import pytest

from voxaudit.data import sentences as sent
from voxaudit.data.text import normalize_transcript


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return sent.generate_sentences(5000, seed=0)


def test_same_seed_same_sentences():
    assert sent.generate_sentences(300, seed=7) == sent.generate_sentences(300, seed=7)
    assert sent.generate_sentences(300, seed=7) != sent.generate_sentences(300, seed=8)


def test_shorter_runs_are_prefixes():
    assert sent.generate_sentences(100, seed=3) == sent.generate_sentences(400, seed=3)[:100]


def test_five_thousand_distinct_sentences(corpus):
    assert len(corpus) == 5000
    assert len(set(corpus)) == 5000


def test_vocabulary_is_large_and_complete(corpus):
    used = {w for s in corpus for w in s.split()}
    assert len(used) >= 1000
    assert used <= sent.vocabulary()


def test_sentences_are_normalized(corpus):
    for s in corpus:
        assert normalize_transcript(s) == s
        assert re.fullmatch(r"[a-z']+( [a-z']+)*", s)


def test_word_counts_in_range(corpus):
    counts = [len(s.split()) for s in corpus]
    assert min(counts) >= sent.MIN_WORDS
    assert max(counts) <= sent.MAX_WORDS
    assert len(set(counts)) == sent.MAX_WORDS - sent.MIN_WORDS + 1


def test_every_sentence_has_a_verb_from_the_lists(corpus):
    verbs = sent.verb_forms()
    assert all(verbs & set(s.split()) for s in corpus)


def test_articles_agree(corpus):
    for s in corpus:
        for article, word in re.findall(r"\b(a|an) ([a-z']+)", s):
            assert article == sent.article(word), s
            if word[0] in "aeio":
                assert article == "an", s


@pytest.mark.parametrize(
    "pair",
    [
        "i is", "i are", "he are", "she are", "they is", "we is", "we was", "they was", "i were",
        "he have", "she have", "they has", "we has", "he don't", "she don't", "they doesn't",
        "he do", "she do", "i has", "you is", "you was",
    ],
)  # fmt: skip
def test_pronouns_agree_with_their_verbs(corpus, pair):
    assert not [s for s in corpus if re.search(rf"\b{pair}\b", s)]


def test_questions_are_marked_and_common(corpus):
    questions = [s for s in corpus if sent.is_question(s)]
    assert 0.1 < len(questions) / len(corpus) < 0.4
    assert all(sent.spoken_form(q).endswith("?") for q in questions)
    assert sent.spoken_form("please open the window") == "please open the window."
    # Commands open with a bare verb, so no verb may look like a question word.
    verbs = {v for name in sent.VERB_LISTS for v in sent.word_list(name)}
    assert not verbs & sent.QUESTION_STARTERS


def test_variety_of_forms(corpus):
    text = "\n".join(corpus)
    for marker in ("will", "didn't", "has", "were", "please", "let's", "there", "because"):
        assert re.search(rf"\b{marker}\b", text), marker
    assert any(s.startswith(("where", "why", "who", "what")) for s in corpus)


@pytest.mark.parametrize(
    ("function", "word", "expected"),
    [
        (sent.past, "buy", "bought"),
        (sent.past, "stop", "stopped"),
        (sent.past, "visit", "visited"),
        (sent.past, "carry", "carried"),
        (sent.past, "bake", "baked"),
        (sent.participle, "eat", "eaten"),
        (sent.gerund, "make", "making"),
        (sent.gerund, "swim", "swimming"),
        (sent.gerund, "agree", "agreeing"),
        (sent.third_person, "carry", "carries"),
        (sent.third_person, "wash", "washes"),
        (sent.third_person, "play", "plays"),
        (sent.plural, "child", "children"),
        (sent.plural, "fisherman", "fishermen"),
        (sent.plural, "box", "boxes"),
        (sent.plural, "baby", "babies"),
        (sent.plural, "key", "keys"),
        (sent.article, "umbrella", "an"),
        (sent.article, "uniform", "a"),
        (sent.article, "hour", "an"),
        (sent.article, "horse", "a"),
    ],
)
def test_morphology(function, word, expected):
    assert function(word) == expected


def test_word_lists_are_clean():
    names = [
        *sent.VERB_LISTS, *sent.NOUN_LISTS, "food_mass", "nouns_places", "names", "adverbs",
        "days", "months", "adjectives_people", "adjectives_things", "adjectives_food",
        "adjectives_places",
    ]  # fmt: skip
    total: set[str] = set()
    for name in names:
        words = sent.word_list(name)
        assert len(words) == len(set(words)), name
        total |= set(words)
    assert len(total) >= 1000
    # Every irregular verb is one the lists use, and every row has its three forms.
    table = resources.files("voxaudit.data").joinpath("resources/irregular_verbs.txt")
    rows = [line.split() for line in table.read_text("utf-8").splitlines()]
    verbs = {v for name in sent.VERB_LISTS for v in sent.word_list(name)}
    assert all(len(row) == 3 for row in rows)
    assert {row[0] for row in rows} <= verbs
