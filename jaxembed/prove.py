"""``jaxembed prove``: run the hypothesis proofs and print one row per equation family.

Each file in ``proofs/`` proves one family of equations; its module docstring's first line
names it. This runs them with pytest under a hypothesis profile (``ci`` by default,
``thorough`` for many more examples) and tabulates examples passed and failed per file.
"""

from __future__ import annotations

import ast
import os
import time
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table


def proofs_dir() -> Path:
    """The ``proofs/`` folder of the source checkout jaxembed is installed from."""
    here = Path(__file__).resolve().parent.parent / "proofs"
    if not here.is_dir():
        raise FileNotFoundError(
            f"no proofs/ folder next to the jaxembed package (looked in {here}); the proofs "
            "ship with the source checkout: install it with `pip install -e '.[test]'`"
        )
    return here


def _equation(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class _Collector:
    """A pytest plugin that counts outcomes per proof file."""

    def __init__(self) -> None:
        self.outcomes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.seconds: dict[str, float] = defaultdict(float)

    def pytest_runtest_logreport(self, report) -> None:
        file = report.nodeid.split("::")[0]
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            self.outcomes[file][report.outcome] += 1
            self.seconds[file] += report.duration


def _proof_names(path: Path) -> list[set[str]]:
    """The keywords pytest's ``-k`` sees for each proof function of a file (read with
    :mod:`ast`, nothing imported): the file name, the folder, the class and the function."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in tree.body:
        members = node.body if isinstance(node, ast.ClassDef) else [node]
        for item in members:
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and (
                    item.name.startswith("test")):
                names = {path.name, path.stem, "proofs", item.name}
                if isinstance(node, ast.ClassDef):
                    names.add(node.name)
                found.append(names)
    return found


def matching_proofs(pattern: str) -> list[str]:
    """The proof functions a pytest ``-k pattern`` selects, judged from names alone (the
    same rule as pytest: a word matches a case-insensitive substring of a name). Raises
    ValueError naming the pattern if it does not parse."""
    from _pytest.mark.expression import Expression  # pytest's own -k grammar

    try:
        expression = Expression.compile(pattern)
    except Exception as err:  # its ParseError / SyntaxError (pytest versions differ)
        raise ValueError(f"-k {pattern!r} is not a pytest -k expression: {err}") from None
    selected = []
    for path in sorted(proofs_dir().glob("proof_*.py")):
        for names in _proof_names(path):
            lowered = [name.lower() for name in names]
            if expression.evaluate(lambda word, /, lowered=lowered, **_: any(
                    word.lower() in name for name in lowered)):
                selected.append(f"{path.name}::{max(names, key=lambda n: n.startswith('test'))}")
    return selected


def run(profile: str = "ci", pattern: str | None = None) -> int:
    """Run the proofs; print the summary table; return pytest's exit code."""
    try:
        import pytest
    except ImportError as err:
        raise SystemExit(
            "jaxembed prove needs the test extra: pip install -e '.[test]'"
        ) from err
    folder = proofs_dir()
    os.environ["HYPOTHESIS_PROFILE"] = profile
    collector = _Collector()
    args = [str(folder), "-q", "-p", "no:cacheprovider", "--no-header", "-rN"]
    if pattern:
        args += ["-k", pattern]
    start = time.perf_counter()
    code = pytest.main(args, plugins=[collector])
    elapsed = time.perf_counter() - start

    table = Table(title=f"jaxembed proofs (hypothesis profile '{profile}')")
    for column in ("proof file", "equation", "passed", "failed", "seconds"):
        table.add_column(column, justify="right" if column in ("passed", "failed", "seconds")
                         else "left")
    totals = defaultdict(int)
    for file in sorted(collector.outcomes):
        counts = collector.outcomes[file]
        name = Path(file).name
        table.add_row(name, _equation(folder / name), str(counts["passed"]),
                      str(counts["failed"]), f"{collector.seconds[file]:.1f}")
        for key, value in counts.items():
            totals[key] += value
    Console().print(table)
    print(f"{totals['passed']} proofs passed, {totals['failed']} failed, "
          f"{totals['skipped']} skipped in {elapsed:.0f} s")
    return int(code)
