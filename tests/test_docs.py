"""The documents a newcomer is pointed to are in the repository: every ``.md`` file the README or a
file under ``docs/`` names exists, and the API contract, security rules and glossary are there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MD_NAME = re.compile(r"(?<![\w/.-])([\w./-]*[A-Za-z_-]+\.md)\b")


def _exists(name: str, near: Path) -> bool:
    candidates = [ROOT / name, near / name, ROOT / "docs" / Path(name).name]
    return any(c.is_file() for c in candidates)


def test_every_document_the_readme_and_docs_name_exists():
    missing = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for name in MD_NAME.findall(doc.read_text(encoding="utf-8")):
            if not _exists(name, doc.parent):
                missing.append(f"{doc.relative_to(ROOT)} names {name}")
    assert not missing, "\n".join(missing)


def test_the_contract_rules_and_glossary_are_in_the_repository_and_linked():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in ("docs/api.md", "docs/security.md", "docs/glossary.md"):
        assert (ROOT / name).is_file(), name
        assert name in readme, f"the README does not point to {name}"
    api = (ROOT / "docs/api.md").read_text(encoding="utf-8")
    for path in ("/leads/export", "/allocation-rules/{id}/preview", "/public/forms/{slug}/submissions", "/sync"):
        assert path in api, path
