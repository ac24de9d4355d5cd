"""Monitoring as pure functions: feature and prediction drift (PSI) and the fairness of recommendations.

Nothing here imports Dagster: the asset checks pass arrays in and publish the JSON reports these return.
"""
