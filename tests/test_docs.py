"""The documentation keeps up with the code: every config key documented, the conda
environment pinned like the project, the science cited where it lives.
"""

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# The workflow engine runs the rules; it is not needed inside a rule's environment.
ENGINE = {"snakemake", "snakemake-executor-plugin-slurm"}


def schema_keys(node: dict, path: str = "") -> list[str]:
    """Every property name of the schema at every nesting level, with its dotted path."""
    keys = []
    for name, sub in node.get("properties", {}).items():
        keys.append(f"{path}{name}")
        keys += schema_keys(sub, f"{path}{name}.")
        for branch in ("items", "additionalProperties"):
            if isinstance(sub.get(branch), dict):
                keys += schema_keys(sub[branch], f"{path}{name}.*.")
    return keys


def test_every_schema_key_appears_in_the_config_readme():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    readme = (REPO / "config/README.md").read_text()
    keys = schema_keys(schema)
    assert len(keys) > 50
    # Each key named in backticks, alone or as the end of a dotted path (`search.enabled`).
    missing = [
        key
        for key in keys
        if not re.search(rf"`([\w.*]+\.)?{re.escape(key.rsplit('.', 1)[-1])}`", readme)
    ]
    assert not missing, f"config/README.md does not mention {missing}"


def pins(lines) -> dict[str, str]:
    found = {}
    for line in lines:
        name, _, version = line.strip().lstrip("- ").partition("==")
        if version:
            found[name.lower()] = version
    return found


def test_the_conda_environment_pins_what_pyproject_pins():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    expected = pins(project["dependencies"])
    env = yaml.safe_load((REPO / "envs/pipeline.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pins(pip) == {k: v for k, v in expected.items() if k not in ENGINE}
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python.replace(" ", "") == "python=3.11" and "<3.12" in project["requires-python"]


def test_the_science_is_cited_where_it_lives():
    assert (REPO / "docs/science.md").is_file() and (REPO / "docs/performance.md").is_file()
    sources = [
        *REPO.glob("workflow/**/*.py"),
        *REPO.glob("workflow/**/*.smk"),
        *REPO.glob("workflow/**/*.yaml"),
        *REPO.glob("notebooks/*.py"),
        *REPO.glob("config/*"),
        REPO / "README.md",
    ]
    stale = [
        str(p.relative_to(REPO)) for p in sources if re.search(r"\bSCIENCE\.md", p.read_text())
    ]
    assert not stale, f"cite docs/science.md, not SCIENCE.md: {stale}"
