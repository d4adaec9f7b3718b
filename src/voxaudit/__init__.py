"""voxaudit: privacy audits for speech models and a guard for speech APIs."""

from voxaudit.data.corpus import Corpus, Problem, Utterance

__version__ = "0.1.0"
__all__ = ["Corpus", "Problem", "Utterance", "__version__"]
