"""voxaudit: privacy audits for speech models and a guard for speech APIs.

>>> import voxaudit
>>> result = voxaudit.audit(model, corpus, members=train_ids, nonmembers=test_ids)
>>> print(result)
"""

__version__ = "0.1.0"

from voxaudit.api import AuditResult, audit
from voxaudit.data.corpus import Corpus, Problem, Utterance
from voxaudit.data.splits import AuditSplit
from voxaudit.mia.core import AuditConfig, AuditedModel
from voxaudit.models.adapters.torch import (
    TorchClassifier,
    TorchRecognizer,
    TorchSpeakerEncoder,
)

__all__ = [
    "AuditConfig",
    "AuditResult",
    "AuditSplit",
    "AuditedModel",
    "Corpus",
    "Problem",
    "TorchClassifier",
    "TorchRecognizer",
    "TorchSpeakerEncoder",
    "Utterance",
    "__version__",
    "audit",
]
