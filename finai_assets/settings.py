"""The validated FinAI settings, read once per process for definitions and resources."""

from __future__ import annotations

from functools import lru_cache

from finai_models.config import Settings, load_settings


@lru_cache(maxsize=1)
def settings() -> Settings:
    return load_settings()
