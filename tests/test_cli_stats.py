"""``python -m server rebuild-stats`` and the report jobs, as an operator runs them."""

from __future__ import annotations

import json

import pytest

from test_cli import Cli


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> Cli:
    return Cli(tmp_path_factory.mktemp("cli-stats") / "data")


def test_rebuild_stats_and_the_report_jobs_run_from_the_command_line(cli):
    fold = cli.run("run-job", "fold_stats", "--now", "2026-11-23T09:00:00+08:00")
    assert fold.returncode == 0, fold.stderr
    assert json.loads(fold.stdout) == {"job": "fold_stats", "batches": 0, "events": 0, "recovered": 0}
    rebuilt = cli.run("rebuild-stats")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout) == {"events": 0, "leads": 0, "current_docs": 0, "cum_docs": 0, "lifetime_values": 0}
    rfm = cli.run("run-job", "rfm_layers")
    assert rfm.returncode == 0, rfm.stderr
    assert json.loads(rfm.stdout) == {"job": "rfm_layers", "scored": 0, "changed": 0, "teams": 0}
