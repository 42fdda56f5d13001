"""The Colab path agrees with itself: the launch button (the branch in _config.yml), every
chapter's setup cell (the ref it installs the package from) and the browser check's expected
Colab link name one repository and one ref."""
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPOSITORY = CONFIG["repository"]["url"].rstrip("/")
BRANCH = CONFIG["repository"]["branch"]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def setup_problems(source: str, repository: str, ref: str) -> list[str]:
    """What is wrong with a setup cell's install line, or [] when it installs ``repository``
    at ``ref`` and says so when the install fails."""
    problems = []
    found = re.search(r'^REF = "([^"]+)"', source, re.M)
    if not found or found.group(1) != ref:
        problems.append(f"REF is {found.group(1) if found else None!r}, not {ref!r}")
    if f"git+{repository}@{{REF}}" not in source:
        problems.append(f"does not install git+{repository}@{{REF}}")
    if "raise SystemExit" not in source:
        problems.append("no message when the install fails")
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_installs_the_branch_the_launch_button_opens(path):
    first = json.loads(path.read_text())["cells"][0]
    assert setup_problems("".join(first["source"]), REPOSITORY, BRANCH) == []


def test_the_browser_check_expects_the_same_colab_link():
    sys.path.insert(0, str(ROOT / "tools"))
    import browser_check

    owner_repo = REPOSITORY.removeprefix("https://github.com/")
    assert browser_check.COLAB_PREFIX == (
        f"https://colab.research.google.com/github/{owner_repo}/blob/{BRANCH}/")


def test_a_setup_cell_at_another_ref_is_caught():
    source = "".join(json.loads(NOTEBOOKS[0].read_text())["cells"][0]["source"])
    # negative controls: the nonexistent tag the book once installed, and a silent install
    assert setup_problems(source.replace(f'REF = "{BRANCH}"', 'REF = "v0.1.0"'),
                          REPOSITORY, BRANCH)
    assert setup_problems(source.replace("raise SystemExit", "print"), REPOSITORY, BRANCH)
