"""The hostile corpus (tests/support/hostile_corpus.py), written once per session, and running the command
line on it in this process."""
from __future__ import annotations

from pathlib import Path

import pytest

from support.hostile_corpus import Case, all_cases, inputs, write_all


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict[str, Case]:
    root = tmp_path_factory.mktemp("hostile")
    return write_all(all_cases(root), root)


@pytest.fixture(scope="session")
def good_inputs(corpus) -> tuple[Path, Path]:
    """The example photo and 1 s of its speech, beside the corpus."""
    return inputs(next(iter(corpus.values())).path.parents[1])


@pytest.fixture
def no_frontend_process(monkeypatch):
    """``avct generate`` runs its speech front end in this process (as where no process can start), so that
    a refused input costs no child process."""
    from avct.audio import frontend_process

    def unavailable(*args, **kwargs):
        raise OSError("no child process in these tests")

    monkeypatch.setattr(frontend_process.FrontendProcess, "__init__", unavailable)

