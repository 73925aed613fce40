"""Shared fixtures (tiny datasets made by the tests themselves) and the ``slow`` marker's rule.

``pytest -m "not slow"`` (``make test-fast``) is the quick loop; CI runs everything. A test is
slow when it trains, crops with MTCNN, synthesises more than a handful of people, starts a
server or a browser: marked by hand, or here when it uses a fixture that does one of these."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from maskcls.synth.generate import SynthSpec, generate_dataset
from tests.helpers import make_layout

SLOW_FIXTURES = {  # fixtures that synthesise, train, start a server or a database
    "synth_small", "synth_quirks", "finished_group", "swept", "served", "client", "live_server", "postgres_url",
    "full_size", "trained_run", "tracking_server", "explained_group",
}  # fmt: skip


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    return make_layout(tmp_path / "data", ["000001_female_Asian_45", "000002_male_Asian_22"])


@pytest.fixture(scope="session")
def synth_quirks(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "quirks"
    generate_dataset(root, SynthSpec(people=14, eval_people=4, seed=3, quirks=True), workers=1)
    return root


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "small"
    generate_dataset(root, SynthSpec(people=24, eval_people=8, seed=5), workers=2)
    return root


def pytest_sessionfinish(session, exitstatus):
    """With MASKCLS_FORBID_SKIPS=1 (CI sets it) a skipped test fails the run: a check that was
    meant to run and did not is not a pass."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and os.environ.get("MASKCLS_FORBID_SKIPS") == "1" and exitstatus == 0:
        names = ", ".join(report.nodeid for report in skipped[:5])
        reporter.write_line(f"MASKCLS_FORBID_SKIPS=1: {len(skipped)} test(s) skipped: {names}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
