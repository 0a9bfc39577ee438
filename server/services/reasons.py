"""Lost and churn reasons (丢单原因 / 流失原因) from the team's catalogue.

A lead moved to ``lost`` or ``churned`` names a ``reason_code`` of its team's catalogue (team
settings ``reasons.lost`` / ``reasons.churn``, server/schemas/team_settings.py); ``other`` takes a
``reason_note``. An old client that sends only the free-text ``reason`` is understood as ``other``
with that text as the note, so it keeps working. The code and the note go on the ``stage_changed``
event, where the report fold counts them (``lost_reason__{code}`` / ``churn_reason__{code}``,
server/services/stats.py). Pure functions: the catalogue is passed in.
"""

from __future__ import annotations

from typing import Any

from server.errors import Invalid, detail
from server.schemas.team_settings import Reason, ReasonSettings

OTHER = "other"
# The stage a catalogue belongs to, and the counter prefix of the report fold.
CATALOGUES = {"lost": "lost", "churned": "churn"}
COUNTER_PREFIX = {"lost": "lost_reason__", "churned": "churn_reason__"}


def catalogue(reasons: ReasonSettings, stage: str) -> list[Reason]:
    return list(getattr(reasons, CATALOGUES[stage]))


def resolve(reasons: ReasonSettings, to: str, code: str | None, note: str | None, text: str | None) -> dict[str, Any] | None:
    """The reason fields of a move's event: ``{reason_code, reason_note, reason}``, or None for a
    move that takes no coded reason. Refuses (422, the field named, nothing written) an unknown
    code, ``other`` without a note, and a code or note on a move that takes none."""
    if to not in CATALOGUES:
        if code is not None or note is not None:
            field = "reason_code" if code is not None else "reason_note"
            raise Invalid("request.invalid", details=[detail(field, "not_allowed", text="reason_code_lost_churned_only")])
        return None
    if code is None:
        if note is None and text is None:
            return None  # the stage machine says whether this move needs a reason
        code, note = OTHER, note or text  # an old client's free text: "other", the text as its note
    entries = {r.code: r for r in catalogue(reasons, to)}
    entry = entries.get(code)
    if entry is None:
        raise Invalid("lead.unknown_reason", details=[detail("reason_code", "unknown", text="reason_code_unknown", value=",".join(entries), allowed=", ".join(entries))])
    if code == OTHER and not note:
        raise Invalid("lead.reason_required", details=[detail("reason_note", "required", text="reason_note_required")])
    label = label_texts(entry)
    return {"reason_code": code, "reason_note": note, "reason": note or text or label}


def label_texts(entry: Reason) -> dict[str, str]:
    """A catalogue label in both languages (``label_en`` falls back to ``label``)."""
    return {"zh-CN": entry.label, "en": entry.label_en or entry.label}


def counted(reasons: ReasonSettings, stage: str, totals: dict[str, int]) -> list[dict[str, Any]]:
    """``[{code, label, count, share}]`` of a period's counters: every code of the catalogue (0 if
    unused), then codes counted that the catalogue no longer lists (labelled by their code); most
    frequent first, catalogue order between equals. ``share`` is of all coded moves (None if none)."""
    prefix = COUNTER_PREFIX[stage]
    counts = {k[len(prefix):]: int(v) for k, v in totals.items() if k.startswith(prefix) and int(v)}
    rows: list[dict[str, Any]] = [{"code": r.code, "label": label_texts(r), "count": counts.pop(r.code, 0)} for r in catalogue(reasons, stage)]
    rows += [{"code": code, "label": {"zh-CN": code, "en": code}, "count": n} for code, n in sorted(counts.items())]
    total = sum(r["count"] for r in rows)
    for r in rows:
        r["share"] = round(r["count"] / total, 4) if total else None
    order = {r["code"]: i for i, r in enumerate(rows)}
    return sorted(rows, key=lambda r: (-r["count"], order[r["code"]]))
