"""The Dagster code location: everything under ``defs/`` is collected.

Steps run in one process: the DuckDB warehouse takes a single writer, and a process per
step would spend more time importing than working on monthly partitions. Heavy training
leaves this process through Dagster Pipes instead.
"""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        dg.Definitions(executor=dg.in_process_executor),
    )
