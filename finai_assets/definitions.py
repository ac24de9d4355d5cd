"""The Dagster code location: everything under ``defs/`` is collected.

Steps run in one process: the DuckDB warehouse takes a single writer, and a process per
step would spend more time importing than working on monthly partitions. Heavy training
leaves this process through Dagster Pipes instead.
"""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    """Every domain's definitions, the in-process executor, and the finished code location handed to the
    model card (``code_location``), which reports on the checks of the whole graph."""
    from finai_assets.defs.governance.facts import CodeLocationSource  # the domains load with the location

    code_location = CodeLocationSource()
    definitions = dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        dg.Definitions(executor=dg.in_process_executor,
                       resources={"code_location": dg.ResourceDefinition.hardcoded_resource(code_location)}),
    )
    code_location.definitions = definitions
    return definitions
