"""voxaudit: privacy audits for speech models and a guard for speech APIs.

>>> import voxaudit
>>> result = voxaudit.audit(model, corpus, members=train_ids, nonmembers=test_ids)
>>> print(result)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: The public API and where each name lives. Imported on first use, so that ``import voxaudit``
#: (and the command line's ``--help``) does not pay for torch and scikit-learn up front.
_EXPORTS = {
    "audit": "voxaudit.api",
    "AuditResult": "voxaudit.api",
    "AuditConfig": "voxaudit.mia.core",
    "AuditedModel": "voxaudit.mia.core",
    "AuditSplit": "voxaudit.data.splits",
    "ComputeConfig": "voxaudit.compute",
    "Corpus": "voxaudit.data.corpus",
    "Problem": "voxaudit.data.corpus",
    "Utterance": "voxaudit.data.corpus",
    "TorchClassifier": "voxaudit.models.adapters.torch",
    "TorchRecognizer": "voxaudit.models.adapters.torch",
    "TorchSpeakerEncoder": "voxaudit.models.adapters.torch",
    "dp_audit": "voxaudit.pipeline.dp_audit",
    "DPAuditConfig": "voxaudit.mia.configs",
    "make_canaries": "voxaudit.data.canaries",
    "canary_scores": "voxaudit.mia.one_run",
    "audit_canaries": "voxaudit.mia.one_run",
}
__all__ = [
    "AuditConfig",
    "AuditResult",
    "AuditSplit",
    "AuditedModel",
    "ComputeConfig",
    "Corpus",
    "DPAuditConfig",
    "Problem",
    "TorchClassifier",
    "TorchRecognizer",
    "TorchSpeakerEncoder",
    "Utterance",
    "__version__",
    "audit",
    "audit_canaries",
    "canary_scores",
    "dp_audit",
    "make_canaries",
]

if TYPE_CHECKING:
    from voxaudit.api import AuditResult, audit
    from voxaudit.compute import ComputeConfig
    from voxaudit.data.canaries import make_canaries
    from voxaudit.data.corpus import Corpus, Problem, Utterance
    from voxaudit.data.splits import AuditSplit
    from voxaudit.mia.configs import AuditConfig, DPAuditConfig
    from voxaudit.mia.core import AuditedModel
    from voxaudit.mia.one_run import audit_canaries, canary_scores
    from voxaudit.models.adapters.torch import (
        TorchClassifier,
        TorchRecognizer,
        TorchSpeakerEncoder,
    )
    from voxaudit.pipeline.dp_audit import dp_audit


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'voxaudit' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
