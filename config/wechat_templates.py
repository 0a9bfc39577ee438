"""The subscribe-message template catalogue, read from the mini-program's own ``templates.js``.

``miniprogram_stub/miniprogram/templates.js`` is the one place the template ids are written: the
mini-program's ``config.js`` takes its ids from it, the server uses it as the built-in value of
``MPCRM_WECHAT_TEMPLATES`` (which is merged over it), and the fake WeChat API knows exactly these
templates. Its body after ``module.exports =`` is plain JSON.
"""

from __future__ import annotations

import copy
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

MINIPROGRAM_DIR = Path(__file__).resolve().parent.parent / "miniprogram_stub" / "miniprogram"
TEMPLATES_FILE = MINIPROGRAM_DIR / "templates.js"
APP_JSON = MINIPROGRAM_DIR / "app.json"


def keyword_type(key: str) -> str:
    """A template keyword's type: ``thing1`` → ``thing``, ``character_string12`` → ``character_string``."""
    return key.rstrip("0123456789")


@lru_cache(maxsize=4)
def _read(path: Path) -> dict[str, dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    match = re.search(r"^module\.exports\s*=(.*)$", text, re.MULTILINE | re.DOTALL)
    if match is None:
        raise ValueError(f"{path}: expected a line `module.exports = {{...}};`")
    body = match.group(1).strip().rstrip(";").strip()
    try:
        catalogue = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"{path}: the part after `module.exports =` must be plain JSON ({exc})") from None
    for kind, template in catalogue.items():
        if not isinstance(template, dict) or not isinstance(template.get("template_id"), str) or not isinstance(template.get("fields"), dict):
            raise ValueError(f"{path}: template {kind!r} needs a template_id and fields")
    return catalogue


def load_templates(path: Path = TEMPLATES_FILE) -> dict[str, dict[str, Any]]:
    """``{kind: {template_id, page, fields: {source: keyword}}}`` (a fresh copy each call)."""
    return copy.deepcopy(_read(path))


def miniprogram_pages(path: Path = APP_JSON) -> list[str]:
    """The pages registered in the mini-program's ``app.json``."""
    return list(json.loads(path.read_text(encoding="utf-8"))["pages"])
