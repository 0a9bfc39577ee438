"""Texts in the two languages we speak (zh-CN first, en second).

System-written texts that a person reads later (allocation reasons, for example) are stored in both
languages as ``{"zh-CN": "...", "en": "..."}``; the response models pick the caller's language
(``Accept-Language``) when they render (``server.schemas.common.LocalizedStr``). A text a person
typed is stored as a plain string and shown as typed.
"""

from __future__ import annotations

from typing import Any

LANGUAGES = ("zh-CN", "en")
DEFAULT_LANGUAGE = "zh-CN"


def both(texts: dict[str, str], params: dict[str, Any] | None = None) -> dict[str, str]:
    """A catalogue entry rendered in every language: ``{"zh-CN": ..., "en": ...}``."""
    return {lang: render(texts, lang, params) for lang in LANGUAGES}


def render(texts: dict[str, str], language: str, params: dict[str, Any] | None = None) -> str:
    text = texts.get(language) or texts[DEFAULT_LANGUAGE]
    try:
        return text.format(**(params or {}))
    except (KeyError, IndexError, ValueError):
        return text


def is_localized(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and set(value) <= set(LANGUAGES) and all(isinstance(v, str) for v in value.values())


def pick(value: Any, language: str | None) -> Any:
    """The caller's language out of a stored ``{"zh-CN", "en"}`` text; anything else unchanged."""
    if not is_localized(value):
        return value
    return value.get(language or DEFAULT_LANGUAGE) or value.get(DEFAULT_LANGUAGE) or next(iter(value.values()))


def pick_all(value: Any, language: str | None) -> Any:
    """``pick`` applied to every value inside a dict or list (timeline event data)."""
    if is_localized(value):
        return pick(value, language)
    if isinstance(value, dict):
        return {k: pick_all(v, language) for k, v in value.items()}
    if isinstance(value, list):
        return [pick_all(v, language) for v in value]
    return value
