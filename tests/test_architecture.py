"""The layout the code promises: each rule runs the subcommand of its name, whose code is the
function of that name in the module of that name; the package has no import cycle; the
command line only parses; the schema is the single source of defaults.
"""

import ast
import importlib
import re
import shlex
from pathlib import Path

import pytest
from rankcollapse.cli import BY_HAND, parser
from workflow_runner import snakemake

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "workflow/rankcollapse"
RULE = re.compile(r"^rule (\w+):", re.MULTILINE)
COMMAND = re.compile(r'"python -m rankcollapse ([\w-]+)')
TINY = REPO / "tests/configs/tiny.yaml"


def rules() -> dict[str, str]:
    """Each rule of workflow/rules/*.smk and the text of its definition."""
    found = {}
    for smk in sorted((REPO / "workflow/rules").glob("*.smk")):
        text = smk.read_text()
        starts = [(m.group(1), m.start()) for m in RULE.finditer(text)]
        ends = [start for _, start in starts[1:]] + [len(text)] * bool(starts)
        for (name, start), end in zip(starts, ends, strict=True):
            found[name] = text[start:end]
        # The training rules, one per pack of runs, are defined in a loop under one name.
        if "name:\n            pack_rule_name(" in text:
            found["train"] = text
    return found


def subcommands() -> set[str]:
    actions = [a for a in parser()._actions if a.dest == "command"]
    return set(actions[0].choices)


def test_every_rule_runs_the_subcommand_and_module_of_its_name():
    commands = {}
    for name, text in rules().items():
        if "shell:\n        PAPERMILL" in text:  # the figure rules run notebooks
            continue
        called = COMMAND.findall(text)
        assert called == [name.replace("_", "-")], f"rule {name} runs {called}"
        module = importlib.import_module(f"rankcollapse.{name}")
        assert callable(getattr(module, name, None)), f"rankcollapse.{name} has no {name}()"
        commands[name] = called[0]
    assert set(commands.values()) == subcommands() - set(BY_HAND), "a subcommand without its rule"
    assert len(commands) >= 10
    for command in BY_HAND:  # a reviewer's, run by make: still the function of its name
        name = command.replace("-", "_")
        assert callable(getattr(importlib.import_module(f"rankcollapse.{name}"), name, None))
        assert f"rankcollapse {command}" in (REPO / "Makefile").read_text()


def test_the_figure_rules_run_the_notebooks_of_their_figures():
    text = (REPO / "workflow/rules/common.smk").read_text()
    for group in ("FIGURES", "FIGURES_UTILIZATION"):
        block = re.search(rf"^{group} = \[(.*?)\]", text, re.MULTILINE | re.DOTALL).group(1)
        for figure in re.findall(r'"(\w+)"', block):
            assert (REPO / "notebooks" / f"{figure}.py").is_file(), figure


def test_every_rules_file_opens_by_naming_its_rules():
    for smk in sorted((REPO / "workflow/rules").glob("*.smk")):
        text = smk.read_text()
        header = "".join(line for line in text.splitlines(True) if line.startswith("#"))
        assert text.startswith("# Rules:") or smk.name == "common.smk", smk.name
        for name in RULE.findall(text):
            assert name in header.split("\n\n")[0], f"{smk.name} does not name rule {name}"


def package_modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports_of(name: str, path: Path) -> set[str]:
    """The package modules ``name`` imports at its top level (deferred imports included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.startswith("rankcollapse"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("rankcollapse"))
    return found


def test_the_package_has_no_import_cycle_and_every_module_imports():
    modules = package_modules()
    graph = {
        name: imports_of(name, path) & modules.keys() - {name} for name, path in modules.items()
    }
    assert graph["rankcollapse.measure"] >= {"rankcollapse.measures", "rankcollapse.statistics"}
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", "import cycle: " + " -> ".join([*trail, node])
        state[node] = "open"
        for child in sorted(graph[node]):
            # a package's own __init__ importing its submodules is not a cycle
            if not node.startswith(child + "."):
                visit(child, [*trail, node])
        state[node] = "done"

    for name in sorted(graph):
        visit(name, [])
        if not name.endswith("__main__"):  # running it is the command line itself
            importlib.import_module(name)


def test_the_command_line_only_parses():
    source = (PACKAGE / "cli.py").read_text()
    tree = ast.parse(source)
    assert len(source.splitlines()) < 150
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level}
    assert imported == {"errors"}, imported  # the commands themselves load lazily
    defaults = [
        kw.arg
        for call in ast.walk(tree)
        if isinstance(call, ast.Call) and getattr(call.func, "attr", "") == "add_argument"
        for kw in call.keywords
        if kw.arg == "default"
    ]
    assert not defaults, "defaults belong in the schema"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_no_second_copy_of_the_schema_defaults(path):
    text = path.read_text()
    assert "DEFAULT_THRESHOLDS" not in text
    assert not re.search(r"\.get\(\"(patch_size|dim|heads|pool|target_scale)\"", text)


def test_every_command_the_rules_build_parses(tmp_path):
    """The shell commands of the tiny study's whole DAG, as Snakemake fills them in, are
    accepted by the command line (so a flag renamed on one side only is caught).
    """
    archive = "results/results-archive.tar"  # not part of `all`
    done = snakemake(tmp_path, "-n", "-p", "--forceall", "all", archive, configfile=TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    commands = re.findall(r"python -m rankcollapse (.*?) > \S+ 2>&1", done.stdout)
    assert {shlex.split(c)[0] for c in commands} == subcommands() - set(BY_HAND)
    for command in commands:
        args = shlex.split(command)
        parser().parse_args(args)
