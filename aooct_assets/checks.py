"""Partition-aware asset checks: registration, SNR, uncertainty, physiology (see ``qc_eval.CHECKS``).

``partitions_def=cases_partitions`` is what makes the checks run per partition in runs
launched by the daemon (measured: without it they do not execute there). A failed check
with a "fail" flag is an ERROR and, when the check is ``blocking``, stops the downstream
assets of the run; "warn" flags show as a WARN and never block. Every result is also written to the
metadata DB (``qc_results``) so the review app shows it without asking Dagster.
"""

import warnings

from dagster import (AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, AssetKey,
                     asset_check)

from dagster._utils.warnings import PreviewWarning

from aooct_assets.assets._common import RETRY, db_of, step_errors, store_of
from aooct_assets.partitions import cases_partitions
from aooct_assets.qc_eval import CHECKS, evaluate

__all__ = ["qc_checks"]


def _make(check: str):
    asset_name, description, blocking = CHECKS[check]

    @asset_check(asset=AssetKey(asset_name), name=check, blocking=blocking,
                 description=f"{description} ({'blocking' if blocking else 'flags, does not block'})",
                 partitions_def=cases_partitions, retry_policy=RETRY,
                 required_resource_keys={"object_store", "metadata_db"})
    def _check(context: AssetCheckExecutionContext) -> AssetCheckResult:
        case_id = context.partition_key
        with step_errors(f"QC check {check} of case {case_id}"):
            result = evaluate(store_of(context), case_id, check)
            db_of(context).record_qc(case_id, [result])
        messages = result["detail"]["messages"]
        return AssetCheckResult(
            passed=result["passed"],
            severity=AssetCheckSeverity.ERROR if result["severity"] == "fail" else AssetCheckSeverity.WARN,
            description="; ".join(messages) or "within limits",
            metadata={"case_id": case_id, "value": result["value"] if result["value"] is not None
                      else float("nan"),
                      "threshold": result["threshold"] if result["threshold"] is not None
                      else float("nan"),
                      "inputs": result["detail"]["inputs"],
                      "checks": [c["name"] for c in result["detail"]["checks"]]},
        )

    return _check


with warnings.catch_warnings():
    # Partitioned checks are a "preview" API in dagster 1.13, and the one that works with
    # daemon-launched runs; the warning would repeat in every process that loads defs.
    warnings.simplefilter("ignore", PreviewWarning)
    qc_checks = [_make(c) for c in CHECKS]
