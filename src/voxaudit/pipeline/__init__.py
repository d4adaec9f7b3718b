"""One-command audit: every applicable attack on one model, one report, a privacy gate."""

from voxaudit.pipeline.config import EXAMPLE, PipelineConfig
from voxaudit.pipeline.gate import GateResult, check, parse_bounds
from voxaudit.pipeline.run import run_audit

__all__ = ["EXAMPLE", "GateResult", "PipelineConfig", "check", "parse_bounds", "run_audit"]
