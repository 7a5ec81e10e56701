"""The docs agree with the program: one measured figure per claim (the README quotes the
block `jaxembed bench job` generates in docs/benchmarks.md), and the README lists every
command the program has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jaxembed.bench.job import BEGIN, END, render, replace_block, wall_seconds
from jaxembed.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _block() -> str:
    text = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    return text[text.index(BEGIN):text.index(END)]


def test_readme_quotes_the_generated_main_job_figures():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    benchmarks = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    (quoted,) = re.findall(r"\*\*(\d+) s wall\*\*", readme)
    assert int(quoted) == wall_seconds(benchmarks)
    auc, bayes = re.search(r"\((0\.\d{4}) against (0\.\d{4}) after the online phase",
                           readme).groups()
    assert f"| period 1, after online | {auc} | {bayes} |" in _block()


def test_no_other_page_states_its_own_main_job_time():
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for claim in ("half a minute", "a few minutes on 2", "minutes on 2 CPU cores"):
            assert claim not in text, (path.name, claim)


def test_readme_lists_every_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(getattr(a, "choices", None), dict)]
    missing = [name for name in commands.choices if f"`jaxembed {name}" not in readme]
    assert not missing, f"README.md does not list: {missing}"


def test_the_block_is_rendered_and_replaced():
    report = {"auc": 0.78, "calibration": 1.0}
    figures = {"offline": report, "online_before": report, "online_after": report,
               "bayes_auc_period0": 0.8, "bayes_auc_period1": 0.8, "seconds": 42.4,
               "train_examples_per_s": 1000.0, "online_examples_per_s": 500.0}
    block = render(figures, "a machine", "load average 1.0", "2026-01-01")
    assert block.startswith(BEGIN) and block.endswith(END) and "**42 s wall**" in block
    text = replace_block(f"before\n{BEGIN}\nold\n{END}\nafter\n", block)
    assert wall_seconds(text) == 42 and text.startswith("before\n") and "old" not in text
    with pytest.raises(ValueError, match="no block"):
        replace_block("nothing here", block)
