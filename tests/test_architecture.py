"""The package's layers, read from its source: no import cycles, the evaluation code used only from above
it, the applications (CLI, server, batch) used by nothing below them."""
from __future__ import annotations

from avct.testing.import_graph import cycles, import_graph

APPLICATIONS = ("avct.cli", "avct.serving", "avct.batch", "avct.__main__")


def test_the_graph_reader_sees_a_cycle_and_imports_inside_functions(tmp_path):
    """The reader on a made-up package: a cycle through a function-level import is found."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .c import g\n")
    (pkg / "c.py").write_text("from .a import x\nimport pkg.d\n")
    (pkg / "d.py").write_text("")
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.c"} and graph["pkg.c"] == {"pkg.a", "pkg.d"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_evaluation_is_imported_only_from_above_it():
    """Landmark groups, apertures and the SyncNet networks live below (face/, models/); what imports
    ``avct.eval`` is the command line and training (its FID features as a loss) only."""
    importers = {module for module, targets in import_graph().items()
                 if not module.startswith("avct.eval") and any(t.startswith("avct.eval") for t in targets)}
    assert importers <= {"avct.cli.evaluate", "avct.train.losses"}, importers


def test_the_applications_are_imported_by_nothing_below_them():
    below = {module: sorted(t for t in targets if t.startswith(APPLICATIONS))
             for module, targets in import_graph().items() if not module.startswith(APPLICATIONS)}
    assert {module: t for module, t in below.items() if t} == {}
