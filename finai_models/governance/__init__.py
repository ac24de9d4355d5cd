"""Monthly model card and governance report (Markdown, self-contained HTML, PNG plots).

Pure Python on plain dicts, with no Dagster import: the asset that collects the month's facts
calls ``model_card.render_model_card`` so that the same card can also be rebuilt offline from an
archived facts file when an auditor or regulator asks for it.
"""
