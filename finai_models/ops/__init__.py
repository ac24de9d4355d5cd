"""The operations agents' rules: the checklist and its verdicts (no Dagster; the asset layer reads the evidence)."""
