"""FinAI's modelling library: data, Phase 0, the teacher. Never imports Dagster.

``PLETeacher`` is imported lazily, so ``import finai_models`` stays free of torch.
"""

__all__ = ["PLETeacher"]


def __getattr__(name: str):
    if name == "PLETeacher":
        from finai_models.teacher.api import PLETeacher

        return PLETeacher
    raise AttributeError(f"module 'finai_models' has no attribute {name!r}")
