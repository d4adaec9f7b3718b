"""One-command audit: every applicable attack on one model, one report, a privacy gate."""

from voxaudit.audit.config import EXAMPLE, AuditConfig
from voxaudit.audit.gate import GateResult, check, parse_bounds
from voxaudit.audit.run import run_audit

__all__ = ["EXAMPLE", "AuditConfig", "GateResult", "check", "parse_bounds", "run_audit"]
