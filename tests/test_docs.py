"""The documentation keeps up with the code: every config key documented, the conda
environment pinned like the project, the full protocol's size as the README states it, the
science cited where it lives.
"""

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from workflow_runner import job_counts, planned_jobs, snakemake

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


def pins(lines) -> dict[str, str | None]:
    """Package name to pinned version of requirement lines; a line without ``==`` is kept with
    version None, so that a loosened pin is not simply left out.
    """
    found = {}
    for line in lines:
        name, _, version = line.strip().lstrip("- ").partition("==")
        found[re.split(r"[<>=!~ \[;]", name, maxsplit=1)[0].lower()] = version.strip() or None
    return found


def test_every_project_dependency_is_pinned():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    dev = project["optional-dependencies"]["dev"]
    loose = [name for name, version in pins(project["dependencies"] + dev).items() if not version]
    assert not loose, f"pyproject.toml does not pin {loose}"


@pytest.mark.parametrize("path", sorted(REPO.glob("envs/*.yaml")), ids=lambda p: p.name)
def test_the_conda_environment_pins_what_pyproject_pins(path):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    expected = pins(project["dependencies"])
    env = yaml.safe_load(path.read_text())
    pip = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert len(pip) == 1, "one pip section"
    assert pins(pip[0]) == {k: v for k, v in expected.items() if k not in ENGINE}
    # Conda itself installs Python and pip only, so no package has a second, unpinned copy.
    conda = [d.replace(" ", "") for d in env["dependencies"] if isinstance(d, str)]
    assert sorted(conda) == ["pip", "python=3.11"] and "<3.12" in project["requires-python"]


def numbers(pattern: str, text: str) -> list[int]:
    found = re.findall(pattern, text)
    assert found, f"README.md no longer says {pattern!r}: update this test with it"
    return [int(re.sub(r"\D", "", n)) for n in found]


def test_the_full_protocol_plans_the_jobs_the_readme_states(tmp_path):
    readme = " ".join((REPO / "README.md").read_text().split())
    jobs = numbers(r"plans (?:the )?(\d[\d ]*) jobs(?: of `config/paper\.yaml`| \(\d)", readme)
    runs = numbers(r"jobs \((\d[\d ]*) training runs", readme)
    packs = numbers(r"training runs, trained by (\d[\d ]*) jobs", readme)
    paper = REPO / "config/paper.yaml"
    done = snakemake(tmp_path, "-n", "-p", configfile=paper)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = job_counts(done.stdout)
    trained = sum(
        job["output"].count("/model.safetensors")
        for job in planned_jobs(done.stdout)
        if job["rule"] == "train"
    )
    assert set(jobs) == {counts["total"]} and set(packs) == {counts["train"]}
    assert set(runs) == {trained}
    # "device: cuda there: every training job asks for a GPU" (test_resources.py: cuda's GPUs)
    assert yaml.safe_load(paper.read_text())["device"] == "cuda"


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
