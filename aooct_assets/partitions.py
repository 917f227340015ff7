"""Each case is one partition of every per-case asset; the drop sensor adds the keys."""
from dagster import DynamicPartitionsDefinition

__all__ = ["cases_partitions"]

#: Partition key = ``case_id`` from ``case.json`` (validated to ``[A-Za-z0-9][A-Za-z0-9._-]*``).
cases_partitions = DynamicPartitionsDefinition(name="cases")
