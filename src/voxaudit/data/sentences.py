"""A seeded generator of varied, grammatical English sentences for the synthetic corpus.

A small template grammar (statements, compound sentences, questions, commands and
"there is" sentences in seven tenses) fills its slots from word lists by part of speech in
``data/resources/*.txt``. Agreement, articles and verb forms follow the subject and tense,
and every clause carries a lexical verb from the verb lists.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable, Sequence
from importlib import resources

from voxaudit.data.text import normalize_transcript

#: Shortest and longest sentence in words: about 2 to 6 seconds at a normal speaking rate.
MIN_WORDS = 7
MAX_WORDS = 13

_WORD = re.compile(r"[a-z]+")
_VOWELS = frozenset("aeiou")
_IRREGULAR_PLURALS = {
    "calf": "calves",
    "child": "children",
    "deer": "deer",
    "goldfish": "goldfish",
    "goose": "geese",
    "knife": "knives",
    "mango": "mangoes",
    "mouse": "mice",
    "person": "people",
    "potato": "potatoes",
    "scarf": "scarves",
    "sheep": "sheep",
    "shelf": "shelves",
    "tomato": "tomatoes",
    "volcano": "volcanoes",
    "wife": "wives",
    "wolf": "wolves",
}
# Vowel letters read as "you"/"wuh" take "a"; a silent h takes "an".
_A_BEFORE_VOWEL = ("uni", "use", "usu", "eu", "one")
_AN_BEFORE_H = ("hour", "honest", "honor", "heir")

_PRONOUNS = {"i": "1s", "you": "2", "he": "3s", "she": "3s", "we": "pl", "they": "pl"}
_OBJECT_PRONOUNS = ("me", "you", "him", "her", "us", "them")
_POSSESSIVES = ("my", "your", "his", "her", "our", "their")
_SINGULAR_DETERMINERS = ("the", "the", "a", "this", "that", *_POSSESSIVES)
_NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve")
_PLURAL_DETERMINERS = (
    "the", "these", "those", "some", "a few", "several", *_POSSESSIVES, *_NUMBERS,
)  # fmt: skip
_INDEFINITE_PLURAL = ("some", "a few", "several", "many", *_NUMBERS)
_MASS_DETERMINERS = ("the", "some", "this", "that", *_POSSESSIVES)
_INTENSIFIERS = ("very", "quite", "rather", "really", "a little", "so")
_PLACE_PREPOSITIONS = (
    "near", "behind", "outside", "beside", "inside", "in front of", "next to", "across from",
    "not far from", "at", "in",
)  # fmt: skip
_MOTION_PREPOSITIONS = ("to", "to", "toward", "past", "into", "across", "around")
_FREQUENCY = ("usually", "often", "always", "sometimes", "never", "rarely")
_PERFECT_ADVERBS = ("already", "just", "recently", "finally")
_MODALS = ("can", "could", "should", "might", "must")
_CONJUNCTIONS = (
    "and", "but", "so", "because", "while", "although", "when", "before", "after", "until",
)  # fmt: skip
_WH_WORDS = ("where", "when", "why", "how")
_COMMAND_TIMES = (
    "before dinner", "after lunch", "tonight", "right now", "this evening", "tomorrow morning",
    "before noon", "after school",
)  # fmt: skip
_PARTS_OF_DAY = ("morning", "afternoon", "evening")
_PERIODS = ("week", "month", "year", "summer", "winter", "spring", "weekend")
_TENSES = (
    "present", "present", "past", "past", "past", "future", "progressive",
    "past_progressive", "perfect", "modal",
)  # fmt: skip
_PREDICATES = ("things", "things", "people", "giving", "food", "motion", "motion", "intransitive")
_ANIMAL_PREDICATES = ("food", "motion", "intransitive")
_QUESTION_TENSES = ("present", "past", "future", "progressive", "perfect", "modal")
#: The first words of questions; statements and commands never start with one of these.
QUESTION_STARTERS = frozenset(
    {"do", "does", "did", "will", "am", "is", "are", "was", "were", "have", "has"}
    | set(_MODALS)
    | {"where", "when", "why", "how", "what", "who", "which"}
)

# Closed-class words that templates and time phrases spell out directly.
_FUNCTION_WORDS = frozenset(
    " ".join(
        (
            *_PRONOUNS, *_OBJECT_PRONOUNS, *_SINGULAR_DETERMINERS, *_PLURAL_DETERMINERS,
            *_MASS_DETERMINERS, *_INDEFINITE_PLURAL, *_INTENSIFIERS, *_PLACE_PREPOSITIONS,
            *_MOTION_PREPOSITIONS, *_FREQUENCY, *_PERFECT_ADVERBS, *_MODALS, *_CONJUNCTIONS,
            *_COMMAND_TIMES, *_PARTS_OF_DAY, *_PERIODS, *QUESTION_STARTERS,
            "an a am is are was were will has have do does did not don't doesn't didn't won't",
            "isn't aren't wasn't weren't hasn't haven't can't couldn't shouldn't mustn't",
            "please let's there ever yet home every on last next ago today tomorrow",
            "yesterday tonight later soon right now at the moment all day night days",
            "which one",
        )
    ).split()
)  # fmt: skip


@functools.cache
def word_list(name: str) -> tuple[str, ...]:
    """The words of ``resources/<name>.txt``, one per line, in file order."""
    text = resources.files("voxaudit.data").joinpath(f"resources/{name}.txt").read_text("utf-8")
    words = tuple(line.strip() for line in text.splitlines() if line.strip())
    bad = [w for w in words if not _WORD.fullmatch(w)]
    if bad:
        raise ValueError(f"resources/{name}.txt: not plain lowercase words: {bad[:5]}")
    return words


@functools.cache
def _irregular_verbs() -> dict[str, tuple[str, str]]:
    """Past tense and participle by base form, from ``irregular_verbs.txt`` (three per line)."""
    text = resources.files("voxaudit.data").joinpath("resources/irregular_verbs.txt")
    rows = [line.split() for line in text.read_text("utf-8").splitlines() if line.strip()]
    return {base: (past, participle) for base, past, participle in rows}


VERB_LISTS = (
    "verbs_things", "verbs_food", "verbs_people", "verbs_giving", "verbs_motion",
    "verbs_intransitive", "verbs_linking",
)  # fmt: skip
NOUN_LISTS = ("nouns_people", "nouns_animals", "nouns_objects", "nouns_food")


def plural(noun: str) -> str:
    """Plural of a countable noun."""
    if noun in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[noun]
    if noun.endswith("man"):
        return noun[:-3] + "men"
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in _VOWELS:
        return noun[:-1] + "ies"
    return noun + "s"


def article(word: str) -> str:
    """The indefinite article before ``word``."""
    if word.startswith(_AN_BEFORE_H):
        return "an"
    if word[0] in _VOWELS and not word.startswith(_A_BEFORE_VOWEL):
        return "an"
    return "a"


def _doubles_final(verb: str) -> bool:
    # One-syllable consonant-vowel-consonant verbs double the consonant (stop -> stopped);
    # the word lists avoid longer verbs stressed on the last syllable (admit, prefer).
    vowel_groups = re.findall(r"[aeiou]+", verb)
    return (
        len(vowel_groups) == 1
        and len(verb) >= 3
        and verb[-1] not in _VOWELS | set("wxy")
        and verb[-2] in _VOWELS
        and verb[-3] not in _VOWELS
    )


def third_person(verb: str) -> str:
    """Present tense after he/she/it."""
    if verb == "go":
        return "goes"
    if verb.endswith(("s", "x", "z", "ch", "sh")):
        return verb + "es"
    if verb.endswith("y") and verb[-2] not in _VOWELS:
        return verb[:-1] + "ies"
    return verb + "s"


def past(verb: str) -> str:
    """Simple past tense."""
    if verb in _irregular_verbs():
        return _irregular_verbs()[verb][0]
    return _regular_past(verb)


def participle(verb: str) -> str:
    """Past participle."""
    if verb in _irregular_verbs():
        return _irregular_verbs()[verb][1]
    return _regular_past(verb)


def _regular_past(verb: str) -> str:
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y") and verb[-2] not in _VOWELS:
        return verb[:-1] + "ied"
    if _doubles_final(verb):
        return verb + verb[-1] + "ed"
    return verb + "ed"


def gerund(verb: str) -> str:
    """The -ing form."""
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb.endswith("e") and not verb.endswith(("ee", "ye", "oe")):
        return verb[:-1] + "ing"
    if _doubles_final(verb):
        return verb + verb[-1] + "ing"
    return verb + "ing"


def verb_forms() -> set[str]:
    """Every form of every verb in the verb lists."""
    forms: set[str] = set()
    for name in VERB_LISTS:
        for verb in word_list(name):
            forms |= {verb, third_person(verb), past(verb), participle(verb), gerund(verb)}
    return forms


@functools.cache
def _vocabulary() -> frozenset[str]:
    words = set(_FUNCTION_WORDS) | verb_forms()
    for name in (*NOUN_LISTS, "food_mass", "nouns_places", "names", "adverbs", "days", "months"):
        words |= set(word_list(name))
    for name in ("people", "things", "food", "places"):
        words |= set(word_list(f"adjectives_{name}"))
    for name in NOUN_LISTS:
        words |= {plural(n) for n in word_list(name)}
    return frozenset(words)


def vocabulary() -> set[str]:
    """Every word the word lists and templates can put in a sentence."""
    return set(_vocabulary())


def is_question(sentence: str) -> bool:
    """Whether a generated sentence is a question (by its first word)."""
    return sentence.split(" ", 1)[0] in QUESTION_STARTERS


def spoken_form(sentence: str) -> str:
    """The sentence with the final punctuation that gives it the right intonation when spoken."""
    return sentence + ("?" if is_question(sentence) else ".")


class _Grammar:
    """The templates; one instance draws from one random stream."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    # -- small helpers -------------------------------------------------------------------

    def pick(self, options: Sequence[str]) -> str:
        return self.rng.choice(options)

    def words(self, name: str) -> str:
        return self.rng.choice(word_list(name))

    def maybe(self, probability: float, make: Callable[[], str]) -> str:
        return make() if self.rng.random() < probability else ""

    # -- noun phrases --------------------------------------------------------------------

    def noun_phrase(
        self, kind: str, plural_p: float = 0.3, indefinite: bool = False
    ) -> tuple[str, str]:
        """A noun phrase of ``kind`` (people, animals, objects, food) and its person."""
        if kind == "food" and self.rng.random() < 0.35:
            return self.mass_phrase(), "3s"
        adjectives = {"objects": "things", "animals": "people"}.get(kind, kind)
        noun = self.words(f"nouns_{kind}")
        adjective = self.maybe(0.45, lambda: self.words(f"adjectives_{adjectives}"))
        if self.rng.random() < plural_p:
            det = self.pick(_INDEFINITE_PLURAL if indefinite else _PLURAL_DETERMINERS)
            return _join(det, adjective, plural(noun)), "pl"
        det = "a" if indefinite else self.pick(_SINGULAR_DETERMINERS)
        head = _join(adjective, noun)
        return _join(article(head) if det == "a" else det, head), "3s"

    def mass_phrase(self) -> str:
        adjective = self.maybe(0.4, lambda: self.words("adjectives_food"))
        return _join(self.pick(_MASS_DETERMINERS), adjective, self.words("food_mass"))

    def place(self) -> str:
        adjective = self.maybe(0.3, lambda: self.words("adjectives_places"))
        return _join("the", adjective, self.words("nouns_places"))

    def subject(self) -> tuple[str, str, bool]:
        """A subject, its person, and whether it is an animal."""
        roll = self.rng.random()
        if roll < 0.25:
            pronoun = self.pick(tuple(_PRONOUNS))
            return pronoun, _PRONOUNS[pronoun], False
        if roll < 0.45:
            return self.words("names"), "3s", False
        animal = roll >= 0.85
        return *self.noun_phrase("animals" if animal else "people"), animal

    def person_object(self) -> str:
        roll = self.rng.random()
        if roll < 0.2:
            return self.pick(_OBJECT_PRONOUNS)
        if roll < 0.4:
            return self.words("names")
        return self.noun_phrase("people" if roll < 0.8 else "animals")[0]

    # -- verb groups ---------------------------------------------------------------------

    def verb_group(
        self, verb: str, tense: str, person: str, negative: bool = False, question: bool = False
    ) -> tuple[str, str]:
        """The auxiliary (may be empty) and main verb form for ``tense`` and ``person``."""
        if tense in ("present", "past"):
            if not (negative or question):
                inflected = third_person(verb) if person == "3s" else verb
                return "", past(verb) if tense == "past" else inflected
            aux = "did" if tense == "past" else "does" if person == "3s" else "do"
            return aux + ("n't" if negative else ""), verb
        if tense == "future":
            return ("won't" if negative else "will"), verb
        if tense == "modal":
            modal = self.pick(_MODALS[:3] if question else _MODALS)
            return _negate(modal) if negative else modal, verb
        if tense == "perfect":
            aux = "has" if person == "3s" else "have"
            return _negate(aux) if negative else aux, participle(verb)
        be = _be(person, past=tense == "past_progressive")
        return _negate(be) if negative else be, gerund(verb)

    def time_phrase(self, tense: str) -> str:
        day, month = self.words("days"), self.words("months")
        part, period = self.pick(_PARTS_OF_DAY), self.pick(_PERIODS)
        options = {
            "present": ("every day", f"every {day}", f"every {part}", f"in {month}", "today"),
            "past": (
                "yesterday",
                f"last {period}",
                f"on {day}",
                f"in {month}",
                f"this {part}",
                f"{self.pick(_NUMBERS)} days ago",
                f"yesterday {part}",
                "last night",
            ),
            "future": ("tomorrow", f"next {period}", f"on {day}", f"in {month}", "tonight", "soon"),
            "progressive": ("right now", "at the moment", "today", f"this {part}"),
            "past_progressive": ("all day", f"all {part}", f"yesterday {part}", "last night"),
            "modal": ("tomorrow", "today", "tonight", "later", f"on {day}", f"this {period}"),
        }.get(tense, ("",))
        return self.pick(options)

    # -- predicates: (verb, words after the verb) ----------------------------------------

    def predicate(self, animal: bool = False) -> tuple[str, str]:
        """A verb and the words after it; animals only move, rest and eat."""
        kind = self.pick(_ANIMAL_PREDICATES if animal else _PREDICATES)
        if kind == "things":
            return self.words("verbs_things"), self.noun_phrase("objects")[0]
        if kind == "people":
            return self.words("verbs_people"), self.person_object()
        if kind == "giving":
            objects = _join(self.noun_phrase("objects")[0], "to", self.person_object())
            return self.words("verbs_giving"), objects
        if kind == "food":
            return self.words("verbs_food"), self.noun_phrase("food")[0]
        if kind == "motion":
            verb = self.words("verbs_motion")
            if self.rng.random() < 0.1:
                return verb, "home"
            return verb, _join(self.pick(_MOTION_PREPOSITIONS), self.place())
        return self.words("verbs_intransitive"), self.maybe(0.6, lambda: self.words("adverbs"))

    def clause(self, tense: str, negative: bool = False) -> str:
        subject, person, animal = self.subject()
        verb, rest = self.predicate(animal)
        aux, main = self.verb_group(verb, tense, person, negative)
        if not aux and tense == "present" and not negative:
            aux = self.maybe(0.35, lambda: self.pick(_FREQUENCY))
        if tense == "perfect" and not negative:
            aux = _join(aux, self.maybe(0.4, lambda: self.pick(_PERFECT_ADVERBS)))
        return _join(subject, aux, main, rest)

    # -- sentence templates --------------------------------------------------------------

    def statement(self) -> str:
        tense = self.pick(_TENSES)
        negative = self.rng.random() < 0.15
        core = self.clause(tense, negative)
        if negative and tense == "perfect":
            return _join(core, "yet")
        time = self.maybe(0.55, lambda: self.time_phrase(tense))
        place = self.maybe(0.25, lambda: f"{self.pick(_PLACE_PREPOSITIONS)} {self.place()}")
        if time and self.rng.random() < 0.4:
            return _join(time, core, place)
        return _join(core, place, time)

    def compound(self) -> str:
        tense = self.pick(("present", "past", "past", "future", "past_progressive"))
        first, second = self.clause(tense), self.clause(tense, self.rng.random() < 0.2)
        if tense == "future":
            # A future clause cannot follow a time conjunction ("when she will arrive").
            return _join(first, self.pick(("and", "but", "so")), second)
        return _join(first, self.pick(_CONJUNCTIONS), second)

    def linking(self) -> str:
        kind = self.pick(("people", "objects", "food", "places"))
        if kind == "places":
            subject, person = self.place(), "3s"
        else:
            subject, person = self.noun_phrase(kind)
        adjectives = {"objects": "things"}.get(kind, kind)
        tense = self.pick(("present", "past", "past", "future", "perfect", "modal"))
        aux, main = self.verb_group(self.words("verbs_linking"), tense, person)
        degree = self.maybe(0.5, lambda: self.pick(_INTENSIFIERS))
        time = self.maybe(0.4, lambda: self.time_phrase(tense))
        return _join(subject, aux, main, degree, self.words(f"adjectives_{adjectives}"), time)

    def there(self) -> str:
        kind = self.pick(("people", "animals"))
        subject, person = self.noun_phrase(kind, plural_p=0.5, indefinite=True)
        be = _be(person, past=self.rng.random() < 0.5)
        verb = self.pick((self.words("verbs_intransitive"), self.words("verbs_motion")))
        place = f"{self.pick(_PLACE_PREPOSITIONS)} {self.place()}"
        return _join("there", be, subject, gerund(verb), place)

    def yes_no_question(self) -> str:
        tense = self.pick(_QUESTION_TENSES)
        subject, person, animal = self.subject()
        verb, rest = self.predicate(animal)
        aux, main = self.verb_group(verb, tense, person, question=True)
        ever = "ever" if tense == "perfect" and self.rng.random() < 0.5 else ""
        time = self.maybe(0.35, lambda: self.time_phrase(tense))
        return _join(aux, subject, ever, main, rest, time)

    def wh_question(self) -> str:
        tense = self.pick(_QUESTION_TENSES)
        subject, person, animal = self.subject()
        roll = self.rng.random()
        if roll < 0.3:
            # Object questions leave the object out: "what did the farmer buy at the market".
            verb = self.words(self.pick(("verbs_things", "verbs_food")))
            aux, main = self.verb_group(verb, tense, person, question=True)
            place = self.maybe(0.6, lambda: f"{self.pick(_PLACE_PREPOSITIONS)} {self.place()}")
            return _join(self.pick(("what", "which one")), aux, subject, main, place)
        if roll < 0.5:
            # Subject questions keep declarative order: "who painted the old fence".
            verb, rest = self.predicate()
            aux, main = self.verb_group(verb, self.pick(("past", "future", "perfect")), "3s")
            return _join("who", aux, main, rest)
        verb, rest = self.predicate(animal)
        aux, main = self.verb_group(verb, tense, person, question=True)
        return _join(self.pick(_WH_WORDS), aux, subject, main, rest)

    def command(self) -> str:
        verb, rest = self.predicate()
        opener = self.pick(("please", "", "", "don't", "let's"))
        time = self.maybe(0.4, lambda: self.pick(_COMMAND_TIMES))
        return _join(opener, verb, rest, time)

    def sentence(self) -> str:
        templates = (
            self.statement, self.compound, self.linking, self.there, self.yes_no_question,
            self.wh_question, self.command,
        )  # fmt: skip
        return self.rng.choices(templates, weights=(33, 15, 8, 7, 13, 11, 13))[0]()


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def _be(person: str, past: bool) -> str:
    if past:
        return "was" if person in ("1s", "3s") else "were"
    return {"1s": "am", "3s": "is"}.get(person, "are")


def _negate(aux: str) -> str:
    # "am not" has no contraction; "will" and "can" contract irregularly.
    return {"am": "am not", "will": "won't", "can": "can't", "might": "might not"}.get(
        aux, aux + "n't"
    )


def generate_sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct normalized sentences of 6-14 words, the same for the same seed."""
    rng = random.Random(seed)
    grammar = _Grammar(rng)
    seen: set[str] = set()
    sentences: list[str] = []
    for _ in range(max(1000, 50 * n)):
        if len(sentences) == n:
            return sentences
        sentence = grammar.sentence()
        if sentence in seen or not MIN_WORDS <= sentence.count(" ") + 1 <= MAX_WORDS:
            continue
        if normalize_transcript(sentence, language="en") != sentence:
            raise ValueError(f"generated sentence is not normalized: {sentence!r}")
        seen.add(sentence)
        sentences.append(sentence)
    if len(sentences) < n:
        raise ValueError(f"could only generate {len(sentences)} distinct sentences, not {n}")
    return sentences
