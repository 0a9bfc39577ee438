"""JSON log lines, with phone numbers and tokens masked before anything is written."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone

# A mainland mobile number not inside a longer run of digits. It opens with the literal "1" (the
# engine then jumps from one "1" to the next instead of trying every position); the look-behind
# after it, "(?<!\d1)", is "no digit before that 1".
_PHONE = re.compile(r"(1(?<!\d1)[3-9]\d)\d{4}(\d{4})(?!\d)")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]+")
_JWT = re.compile(r"eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+")
_OPAQUE = re.compile(r"\b(rt_)[A-Za-z0-9_\-]{8,}")
# A secret-named key and its value. "code" counts as a whole word or with a prefix such as js_,
# phone_ or bind_: WeChat's "errcode" (40029, 45011, ...) is not a secret and stays readable.
_SECRETISH = re.compile(
    r'(?i)("?(?:session_key|secret|password|access_token|refresh_token|(?<![A-Za-z0-9])(?:[A-Za-z0-9]+_)?code)"?\s*[:=]\s*"?)[^",&\s}]+'
)

_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


# Words one of which every match of _SECRETISH (or _BEARER) contains, as ``_folded`` writes them:
# a line without any is left to the cheaper patterns (the access log's lines, most of the time).
_SECRET_WORDS = ("session_key", "secret", "password", "access_token", "refresh_token", "code")


def _folded(text: str) -> str:
    """``text`` as case-insensitive patterns see it: casefolded, with the dotless ı and the dotted
    İ (both of which ``(?i)`` matches to ``i``) as ``i``."""
    return text.casefold().replace("ı", "i").replace("\u0307", "")


def scrub(text: str) -> str:
    text = _PHONE.sub(r"\1****\2", text)
    folded = _folded(text)
    if "bearer" in folded:
        text = _BEARER.sub(r"\1***", text)
    if "eyJ" in text:
        text = _JWT.sub("***jwt***", text)
    if "rt_" in text:
        text = _OPAQUE.sub(r"\1***", text)
    if any(word in folded for word in _SECRET_WORDS):
        text = _SECRETISH.sub(r"\1***", text)
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return scrub(json.dumps(entry, ensure_ascii=False, default=str))


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Tornado's own access log is replaced by our request line.
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
    # A JSON line carries none of the record's standard attributes (``_STANDARD``): not the calling
    # file and line (found by walking the stack for every record), the thread or the process. The
    # logging HOWTO's "Optimization" switches stop collecting them.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
