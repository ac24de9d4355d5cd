"""README's layout section names the tree as it is: every top-level folder, and every domain folder."""

import re
import subprocess

from finai_models.config import REPO_ROOT


def _layout() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("## Layout\n", 1)[1]
    return section.split("```", 2)[1]


def test_the_layout_lists_every_top_level_folder_and_no_other():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    folders = {line.split("/", 1)[0] for line in tracked.splitlines() if "/" in line and not line.startswith(".")}
    listed = set(re.findall(r"^(\S+)/ ", _layout(), re.M))
    assert listed == folders


def test_the_layout_names_every_domain_folder_of_the_asset_layer():
    defs = REPO_ROOT / "finai_assets" / "defs"
    domains = {p.name for p in defs.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    layout = " ".join(_layout().split())
    named = set()
    for group in re.findall(r"defs/\{([^}]*)\}/", layout):
        named |= {name.strip() for name in group.split(",")}
    named |= set(re.findall(r"defs/(\w+)/ ", layout))
    assert named == domains
    shared = re.search(r"defs/\{([^}]*)\}\.py", layout).group(1).replace(" ", "").split(",")
    assert {f"{name}.py" for name in shared} == {p.name for p in defs.glob("*.py") if p.name != "__init__.py"}
