"""The documentation cannot rot: the site builds in strict mode, and every example in it runs.

`mkdocs build --strict` fails on a broken link or cross-reference, a page missing from the
navigation, a docstring whose parameters are not the function's, and (``docs/hooks.py``) a public
name without a docstring or a public module without a page. ``tests/docs_examples.py`` runs every
```python block of the README and the site and every ``>>>`` example of the package's docstrings.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import docs_examples
import griffe
import pytest
from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))
import hooks  # noqa: E402

sys.path.remove(str(ROOT / "docs"))


def test_the_site_builds_in_strict_mode_with_the_notebooks_and_every_public_name(tmp_path):
    site = tmp_path / "site"
    environment = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=environment,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    documented = re.search(r"jaxrnn: (\d+) public modules, functions", built.stderr)
    assert documented and int(documented[1]) > 200, built.stderr
    unroll_page = (site / "api" / "cells" / "index.html").read_text()
    assert 'id="jaxrnn.scan.unroll"' in unroll_page and "reset_carry" in unroll_page
    notebook = (site / "tutorials" / "05_language_model" / "index.html").read_text()
    assert "data:image/png;base64" in notebook  # the stored outputs, figures included
    assert (site / "speed" / "suite_c1.png").exists()  # a benchmark chart, served by the hook


def test_a_public_name_without_a_docstring_or_a_page_fails_the_build(tmp_path):
    package = tmp_path / "toy"
    package.mkdir()
    (package / "__init__.py").write_text('"""A toy."""\n')
    (package / "shown.py").write_text(
        '"""Shown."""\n\ndef good():\n    """Has one."""\n\n\ndef bad():\n    pass\n\n\n'
        "def _private():\n    pass\n"
    )
    loaded = griffe.load("toy", search_paths=[str(tmp_path)])
    with pytest.raises(PluginError, match=r"1 public names have no docstring: toy\.shown\.bad$"):
        hooks.check_documented(loaded, ["shown"], ["::: toy.shown"])
    (package / "shown.py").write_text('"""Shown."""\n\ndef good():\n    """Has one."""\n')
    loaded = griffe.load("toy", search_paths=[str(tmp_path)])
    assert hooks.check_documented(loaded, ["shown"], ["::: toy.shown"]) == 2
    with pytest.raises(PluginError, match=r"on no page .*toy\.shown"):
        hooks.check_documented(loaded, ["shown"], ["::: toy.other"])


@pytest.mark.parametrize("part", ["pages", "docstrings"])
def test_every_python_example_in_the_readme_the_site_and_the_docstrings_runs(part):
    """The README's and the pages' blocks, then the docstrings' examples, each part a process of
    its own (so that the two can run side by side)."""
    ran = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "docs_examples.py"), part],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert ran.returncode == 0, ran.stderr[-4000:]
    report = json.loads(ran.stdout.splitlines()[-1])
    failures = "\n\n".join(f"{f['where']}\n{f['error']}" for f in report["failures"])
    assert not report["failures"], failures
    if part == "pages":
        assert report["blocks"] >= 20 and report["docstring_examples"] == 0, report
    else:
        assert report["blocks"] == 0 and report["docstring_examples"] >= 90, report


def test_the_example_runner_reports_a_failing_block(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n```python\nx = 1\n```\n\n```sh\nexit 1\n```\n\n```python\nassert x == 2\n```\n"
    )
    failures = docs_examples.run_page(page, tmp_path)
    assert [failure["where"] for failure in failures] == ["page.md:11"]
    assert "AssertionError" in failures[0]["error"]


def _shell_lines(page: Path) -> list[str]:
    lines = []
    for _, block in docs_examples.code_blocks(page, "sh"):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split("#")[0].strip()
            if command:
                lines.append(command)
    return lines


@pytest.mark.parametrize("page", docs_examples.pages(), ids=lambda page: page.name)
def test_the_shell_commands_the_docs_show_exist(page):
    from jaxrnn import cli

    parser = cli.build_parser()
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    for command in _shell_lines(page):
        words = shlex.split(command)
        words[0] = words[0].removeprefix(".venv/bin/")
        if words[0] == "jaxrnn" and "--help" not in words:
            try:
                parser.parse_args(words[1:])
            except SystemExit as error:
                pytest.fail(f"{page.name}: `{command}` is not a valid jaxrnn command ({error})")
        elif words[0] == "make":
            assert set(words[1:]) <= targets, f"{page.name}: `{command}` names no make target"
        elif words[0] in ("python", "python3") and words[1] == "-m" and words[2] != "pip":
            path = ROOT / Path(*words[2].split("."))
            assert path.with_suffix(".py").exists() or (path / "__main__.py").exists(), (
                f"{page.name}: `{command}` runs no module of the repository"
            )
