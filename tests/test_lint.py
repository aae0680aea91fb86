"""The project's own gates: ruff, snakefmt and snakemake --lint; no pickle anywhere."""

import ast
import io
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["snakefmt", "--check", "."],
        ["snakemake", "--lint"],
    ],
    ids=" ".join,
)
def test_clean(command):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------- no pickle anywhere
# Modules that unpickle (or run code) on what they read.
PICKLING = {"pickle", "cPickle", "_pickle", "cloudpickle", "dill", "joblib", "shelve"}
# PyYAML's names that build Python objects from tags (CLoader is the C FullLoader).
UNSAFE_YAML = {
    f"yaml.{name}"
    for name in ("unsafe_load", "unsafe_load_all", "full_load", "full_load_all", "Loader")
    + ("FullLoader", "UnsafeLoader", "CLoader", "CFullLoader", "CUnsafeLoader")
}
SAFE_YAML_LOADERS = {"yaml.SafeLoader", "yaml.CSafeLoader", "yaml.BaseLoader", "yaml.CBaseLoader"}


def is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_loading(source: str) -> list[str]:
    """Where Python source reads or writes pickle, or YAML with a loader that builds objects:
    'line: what' for each import of a pickling module, ``torch.load`` without
    ``weights_only=True``, ``torch.save``, ``read_pickle`` / ``to_pickle``, ``np.load`` with
    ``allow_pickle`` not False, ``yaml.load`` without a safe loader, and any unsafe YAML name.
    Names are followed through imports (``import torch as t``, ``from yaml import Loader``).
    """
    tree = ast.parse(source)
    found = []
    names: dict[str, str] = {}  # local name -> dotted name it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def dotted(node) -> str | None:
        if isinstance(node, ast.Name):
            return names.get(node.id, node.id)
        if isinstance(node, ast.Attribute) and (base := dotted(node.value)):
            return f"{base}.{node.attr}"
        return None

    # Loaders of one's own that only add to a safe one (class Strict(yaml.SafeLoader)).
    safe = set(SAFE_YAML_LOADERS)
    classes = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    for _ in classes:
        for c in classes:
            if c.bases and all(dotted(b) in safe for b in c.bases):
                safe.add(c.name)

    def argument(call, keyword: str, position: int):
        given = [k.value for k in call.keywords if k.arg == keyword]
        if given:
            return given[0]
        if any(k.arg is None for k in call.keywords):  # **kwargs: cannot tell
            return ast.Constant(None)
        return call.args[position] if len(call.args) > position else None

    def report(node, what: str) -> None:
        found.append(f"{node.lineno}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.append(node.module)
                modules += [f"{node.module}.{a.name}" for a in node.names]
                modules += [a.name for a in node.names]
            for module in modules:
                if module.split(".")[0] in PICKLING or module in UNSAFE_YAML:
                    report(node, f"imports {module}")
                elif module.rsplit(".", 1)[-1] in ("read_pickle", "to_pickle"):
                    report(node, f"imports {module}")
        elif isinstance(node, ast.Attribute | ast.Name):
            name = dotted(node)
            if name in UNSAFE_YAML:
                report(node, name)
            elif isinstance(node, ast.Attribute) and node.attr in ("read_pickle", "to_pickle"):
                report(node, node.attr)
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func)
        if name == "torch.load" and not is_true(argument(node, "weights_only", 99)):
            report(node, "torch.load without weights_only=True")
        elif name == "torch.save":
            report(node, "torch.save (writes pickle)")
        elif name == "numpy.load" or name == "np.load":
            flag = argument(node, "allow_pickle", 2)
            if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                report(node, "np.load that may allow pickle")
        elif name in ("yaml.load", "yaml.load_all"):
            if dotted(argument(node, "Loader", 1)) not in safe:
                report(node, f"{name} without a safe loader")
        elif name in ("__import__", "importlib.import_module") and node.args:
            module = node.args[0]
            if isinstance(module, ast.Constant) and str(module.value).split(".")[0] in PICKLING:
                report(node, f"imports {module.value}")
    return sorted(set(found), key=lambda f: int(f.split(":")[0]))


def snakemake_as_python(path: Path) -> tuple[str, dict[int, int]]:
    """A Snakefile or rules file as the Python that Snakemake's own parser makes of it, and
    the map of its lines to the file's.
    """
    from snakemake import parser

    source = SimpleNamespace(get_path_or_uri=lambda secret_free=True: str(path))
    text = path.read_text()
    workflow = SimpleNamespace(sourcecache=SimpleNamespace(open=lambda _: io.StringIO(text)))
    lines: dict[int, int] = {}
    return parser.parse(source, workflow, lines)[0], lines


def scan(path: Path) -> list[str]:
    """unsafe_loading of a Python file, or of a Snakemake file translated, as 'line: what'."""
    if path.suffix == ".py":
        return unsafe_loading(path.read_text())
    python, lines = snakemake_as_python(path)
    found = [where.split(": ", 1) for where in unsafe_loading(python)]
    return [f"{lines.get(int(line), line)}: {what}" for line, what in found]


UNSAFE = [
    "import pickle",
    "import cPickle as p",
    "from pickle import loads",
    "import dill",
    "from joblib import load",
    "import importlib\nimportlib.import_module('pickle')",
    "import torch\ntorch.load(path)",
    "import torch\ntorch.load(path, weights_only=False)",
    "import torch as t\nt.load(path, map_location='cpu')",
    "from torch import load\nload(path)",
    "import torch\ntorch.save(model, path)",
    "import pandas as pd\npd.read_pickle(path)",
    "frame.to_pickle(path)",
    "from pandas import read_pickle",
    "import numpy as np\nnp.load(path, allow_pickle=True)",
    "import numpy\nnumpy.load(path, allow_pickle=flag)",
    "import numpy as np\nnp.load(path, None, True)",
    "import yaml\nyaml.load(text)",
    "import yaml\nyaml.load(text, Loader=yaml.Loader)",
    "import yaml\nyaml.load(text, yaml.FullLoader)",
    "import yaml\nyaml.load_all(text, Loader=yaml.CLoader)",
    "import yaml\nyaml.unsafe_load(text)",
    "import yaml\nyaml.full_load(text)",
    "from yaml import UnsafeLoader",
    "import yaml\nclass Mine(yaml.Loader): pass\nyaml.load(text, Loader=Mine)",
]
SAFE = [
    "import yaml\nyaml.safe_load(text)",
    "import yaml\nyaml.load(text, Loader=yaml.SafeLoader)",
    "import yaml\nclass Strict(yaml.SafeLoader): pass\nyaml.load(text, Loader=Strict)",
    "import torch\ntorch.load(path, weights_only=True)",
    "import numpy as np\nnp.load(path)\nnp.load(path, 'r', allow_pickle=False)",
    "# import pickle, torch.load( and yaml.load( in a comment\nnote = 'or in a text: import dill'",
    "pickled = False",
]


@pytest.mark.parametrize("source", UNSAFE)
def test_the_scan_finds_pickle_and_unsafe_yaml(source):
    assert unsafe_loading(source), source


@pytest.mark.parametrize("source", SAFE)
def test_the_scan_passes_safe_loading(source):
    assert not unsafe_loading(source)


def test_the_scan_reads_snakemake_files_as_python(tmp_path):
    rules = tmp_path / "x.smk"
    rules.write_text('rule x:\n    output:\n        "x"\n    run:\n        import pickle\n')
    assert scan(rules) == ["5: imports pickle"]


def test_no_pickle_anywhere():
    python = [
        *REPO.glob("workflow/rankcollapse/**/*.py"),
        *REPO.glob("notebooks/*.py"),
        *REPO.glob("tests/**/*.py"),
        *REPO.glob("benchmarks/**/*.py"),
    ]
    snakemake = [REPO / "Snakefile", *REPO.glob("workflow/rules/*.smk")]
    assert len(python) > 80 and len(snakemake) > 5
    found = [f"{p.relative_to(REPO)}:{where}" for p in python + snakemake for where in scan(p)]
    assert not found, found
