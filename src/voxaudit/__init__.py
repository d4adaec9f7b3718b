"""voxaudit: privacy audits for speech models and a guard for speech APIs.

>>> import voxaudit
>>> result = voxaudit.audit(model, corpus, members=train_ids, nonmembers=test_ids)
>>> print(result)
"""

__version__ = "0.1.0"

from voxaudit.api import AuditResult, audit  # noqa: E402
from voxaudit.data.corpus import Corpus, Problem, Utterance  # noqa: E402
from voxaudit.data.splits import AuditSplit  # noqa: E402
from voxaudit.mia.core import AuditConfig, AuditedModel  # noqa: E402
from voxaudit.models.adapters.torch import (  # noqa: E402
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
