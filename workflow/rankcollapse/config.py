"""Config validation against the schema, and the per-run specifications derived from it.

Imported by the Snakefile, so it needs nothing beyond what Snakemake itself installs.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import jsonschema
import yaml

SPECTRAL_COLUMNS = ("rank_fro", "stable_rank", "effective_rank")
# The CIFAR-10 binary archive and its published md5.
CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR10_BINARY_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"


class ConfigError(ValueError):
    """The config breaks the schema or refers to something that does not exist."""


def _strict_integer(_checker, instance) -> bool:
    """Integers are ints, never floats such as 2.0 (JSON Schema would accept them, and
    ``range(2.0)`` fails deep inside a job) nor booleans."""
    return isinstance(instance, int) and not isinstance(instance, bool)


def _with_defaults(validator_class):
    """A validator class that fills in each missing property's ``default`` while validating,
    with strict integers.
    """
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = json.loads(json.dumps(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    type_checker = validator_class.TYPE_CHECKER.redefine("integer", _strict_integer)
    return jsonschema.validators.extend(
        validator_class, {"properties": set_defaults}, type_checker=type_checker
    )


def key_path(path) -> str:
    """``studies.mnist.weight_decay[1]`` for the path (studies, mnist, weight_decay, 1)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def describe(error: jsonschema.ValidationError) -> str:
    """One line naming the key, the problem, and what is allowed."""
    key = key_path(error.absolute_path)
    message = error.message
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        message += f"; allowed keys: {', '.join(allowed)}" if allowed else ""
    description = error.schema.get("description")
    hint = f" ({description.strip()})" if description and error.validator != "required" else ""
    return f"config key '{key}': {message}{hint}"


def _types(schema: dict) -> set[str]:
    kind = schema.get("type", [])
    return {kind} if isinstance(kind, str) else set(kind)


def _parse_text(text: str, types: set[str]):
    """The value a text stands for where the schema wants no text: an integer, a number, a
    boolean or null; the text itself when it is none of them.
    """
    stripped = text.strip()
    if "integer" in types and re.fullmatch(r"[+-]?[0-9]+", stripped):
        return int(stripped)
    if "number" in types:
        try:
            number = float(stripped)
        except ValueError:
            number = math.nan
        if math.isfinite(number):  # 'nan', 'inf' stay text and are refused as such
            return number
    if "boolean" in types and stripped.lower() in ("true", "false"):
        return stripped.lower() == "true"
    if "null" in types and stripped.lower() in ("null", "~", "none"):
        return None
    return text


def coerce_text(value, schema: dict):
    """``value`` with every text that stands where the schema wants a number, boolean or
    null turned into one. Snakemake reads nested ``--config`` values as text
    (``threads={train: 2}`` gives '2'), and YAML 1.1 reads exponents without a dot (1e-3) as
    text; both mean the number.
    """
    if isinstance(value, str):
        types = _types(schema)
        return value if "string" in types or not types else _parse_text(value, types)
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {
            k: coerce_text(v, properties.get(k, extra if isinstance(extra, dict) else {}))
            for k, v in value.items()
        }
    if isinstance(value, list):
        items = schema.get("items", {})
        return [coerce_text(v, items if isinstance(items, dict) else {}) for v in value]
    return value


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML loading that refuses a key given twice in one mapping (plain YAML keeps the
    last one silently, so a second study of the same name would replace the first).
    """

    def construct_mapping(self, node, deep=False):
        first_line = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in first_line:
                raise ConfigError(
                    f"config file {self.name}: key '{key}' is given twice in one mapping "
                    f"(lines {first_line[key]} and {line}); each name may be defined once: "
                    "rename or merge one of them"
                )
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def load_config_file(path: str | Path) -> dict:
    """A config file read with safe YAML loading, refusing duplicate keys, tags that build
    Python objects, and Snakemake's templating (``__use_yte__``).
    """
    with open(path) as file:
        loader = _UniqueKeyLoader(file)
        try:
            config = loader.get_single_data()
        except yaml.YAMLError as error:
            raise ConfigError(
                f"config file {path} is not plain YAML ({' '.join(str(error).split())}); "
                "write values as plain numbers, strings, lists and mappings"
            ) from None
        finally:
            loader.dispose()
    if isinstance(config, dict) and "__use_yte__" in config:
        raise ConfigError(
            f"config file {path} turns on templating (`__use_yte__`), which runs the Python "
            "expressions in it: Snakemake has already evaluated them while reading the file, "
            "before this check. Remove `__use_yte__` and write plain values."
        )
    return config


def shape_problems(value, path=()) -> list[str]:
    """Problems JSON Schema cannot see: keys that are not text (YAML reads ``1:`` as a number,
    so ``1:`` and ``'1':`` would be two keys naming one thing), and numbers that are not
    finite (``.nan``, ``.inf``, or 1e400 read as infinity).
    """
    problems = []
    if isinstance(value, dict):
        for key, sub in value.items():
            if not isinstance(key, str):
                where = f"{key_path(path)}.{key}" if path else str(key)
                problems.append(
                    f"config key '{where}': the key is a {type(key).__name__}, not text; "
                    f"quote it ('{key}')"
                )
            problems += shape_problems(sub, (*path, str(key)))
    elif isinstance(value, list):
        for index, sub in enumerate(value):
            problems += shape_problems(sub, (*path, index))
    elif isinstance(value, float) and not math.isfinite(value):
        problems.append(f"config key '{key_path(path)}': {value} is not a finite number")
    return problems


def validate_config(config: dict, schema_path: str | Path) -> None:
    """Check ``config`` against the schema, filling in defaults in place; raise ConfigError
    listing every problem.
    """
    if not isinstance(config, dict):
        raise ConfigError("invalid config: the config must be a mapping of keys to values")
    if problems := shape_problems(config):
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    schema = yaml.safe_load(Path(schema_path).read_text())
    config.update(coerce_text(config, schema))
    validator = _with_defaults(jsonschema.validators.validator_for(schema))(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    problems = [describe(e) for e in errors]
    if not problems:
        problems = semantic_problems(config)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Images of the sources that have them (C, H, W), and their train / test set sizes.
IMAGE_SOURCES = {
    "mnist": ((1, 28, 28), 60000, 10000),
    "fashion_mnist": ((1, 28, 28), 60000, 10000),
    "cifar10": ((3, 32, 32), 50000, 10000),
}


def dataset_problems(name: str, dataset: dict) -> list[str]:
    """A dataset's sizes against what its source holds; no subset sizes for synthetic data."""
    key = f"config key 'datasets.{name}"
    if dataset["source"] == "gaussian_clusters":
        return [
            f"{key}.{size}': synthetic data has no subsets; set per_class / test_per_class "
            "instead, or remove the key"
            for size in ("train_size", "test_size")
            if dataset[size] is not None
        ]
    _, train, test = IMAGE_SOURCES[dataset["source"]]
    return [
        f"{key}.{size}': {dataset[size]} is more than the {available} samples of "
        f"{dataset['source']}'s {split} set"
        for size, available, split in (
            ("train_size", train, "training"),
            ("test_size", test, "test"),
        )
        if dataset[size] is not None and dataset[size] > available
    ]


def model_problems(name: str, study: dict, config: dict) -> list[str]:
    """The model against its data: CNN and ViT need images; a ViT's heads divide its width
    and its patch divides the image.
    """
    model, key = study["model"], f"config key 'studies.{name}.model"
    problems = []
    for dataset in study["datasets"]:
        source = config["datasets"].get(dataset, {}).get("source")
        if model["arch"] in ("cnn", "vit") and source not in IMAGE_SOURCES:
            problems.append(
                f"{key}.arch': '{model['arch']}' needs image data, but dataset '{dataset}' is "
                f"{source}; use arch 'mlp' for it"
            )
        elif model["arch"] == "vit" and IMAGE_SOURCES[source][0][1] % model["patch_size"]:
            size = IMAGE_SOURCES[source][0][1]
            problems.append(
                f"{key}.patch_size': {model['patch_size']} does not divide the {size}×{size} "
                f"images of dataset '{dataset}'"
            )
    if model["arch"] == "vit" and model["dim"] % model["heads"]:
        problems.append(f"{key}.heads': {model['heads']} does not divide model.dim {model['dim']}")
    return problems


def semantic_problems(config: dict) -> list[str]:
    """Problems the schema cannot express: references between sections, clashing labels,
    names that are not plain path components, sizes and shapes that do not fit the data.
    """
    problems = [
        f"config key '{section}.{name}': the name must be 1-64 letters, digits, '_', '-' or "
        "'.', starting with a letter or digit (it becomes a folder name)"
        for section in ("datasets", "studies")
        for name in config[section]
        if not NAME.fullmatch(name) or (section == "studies" and "." in name)
    ]
    for name, dataset in config["datasets"].items():
        problems += dataset_problems(name, dataset)
    labels = [eps_rank_column(e) for e in config["measures"]["eps"]]
    if len(set(labels)) != len(labels):
        problems.append(
            f"config key 'measures.eps': values {config['measures']['eps']} give the same "
            "column name twice; use values that differ in their first 6 digits"
        )
    for name, study in config["studies"].items():
        problems += model_problems(name, study, config)
        for dataset in study["datasets"]:
            if dataset not in config["datasets"]:
                problems.append(
                    f"config key 'studies.{name}.datasets': dataset '{dataset}' is not defined; "
                    f"defined datasets: {', '.join(sorted(config['datasets']))}"
                )
        labels = [wd_label(wd) for wd in study["weight_decay"]]
        if len(set(labels)) != len(labels):
            problems.append(
                f"config key 'studies.{name}.weight_decay': values {study['weight_decay']} "
                "give the same path label twice; use values that differ in their first 6 digits"
            )
    allowed = list(SPECTRAL_COLUMNS) + [eps_rank_column(e) for e in config["measures"]["eps"]]
    for section in ("figures", "claims"):
        if config[section]["rank_measure"] not in allowed:
            problems.append(
                f"config key '{section}.rank_measure': '{config[section]['rank_measure']}' "
                f"is not a rank column; allowed: {', '.join(allowed)}"
            )
    problems += utilization_problems(config)
    problems += pretraining_problems(config)
    return problems


def pretraining_problems(config: dict) -> list[str]:
    """A self-supervised study trains on images with a network that has a representation, and
    the supervised study it is compared with (claim U6) has the same model and loss, a
    dataset, λ and seed in common, and is utilized with it.
    """
    problems = []
    utilized = config["utilization"]["studies"]
    for name, study in config["studies"].items():
        if study["objective"] == "supervised":
            continue
        key = f"config key 'studies.{name}"
        problems += [
            f"{key}.datasets': objective '{study['objective']}' augments images, but dataset "
            f"'{d}' is {config['datasets'][d]['source']}; use image datasets only"
            for d in study["datasets"]
            if d in config["datasets"] and config["datasets"][d]["source"] not in IMAGE_SOURCES
        ]
        if study["model"]["arch"] == "mlp" and study["model"]["depth"] < 2:
            problems.append(
                f"{key}.model.depth': an MLP of depth 1 has no representation to pre-train "
                "(its head reads the pixels); use depth 2 or more"
            )
        other_name = study["pretraining"]["compare_with"]
        if other_name is None:
            continue
        if name not in utilized:
            problems.append(
                f"{key}.pretraining.compare_with': '{name}' is compared for claim U6 but is not "
                f"in utilization.studies, so its utilization is not measured: add '{name}' "
                "there, or set compare_with to null"
            )
        other = config["studies"].get(other_name)
        where = f"{key}.pretraining.compare_with': '{other_name}'"
        if other is None or other["objective"] != "supervised":
            supervised = sorted(
                n for n, s in config["studies"].items() if s["objective"] == "supervised"
            )
            choice = (
                f"name one of: {', '.join(supervised)}" if supervised else "the config has none"
            )
            problems.append(
                f"{where} is not a supervised study; {choice} (or set it to null: no comparison)"
            )
            continue
        differs = [
            part
            for part, same in (
                ("model", model_spec(study["model"]) == model_spec(other["model"])),
                (
                    "loss",
                    (study["loss"], study["target_scale"])
                    == (other["loss"], other["target_scale"]),
                ),
                ("datasets", bool(set(study["datasets"]) & set(other["datasets"]))),
                (
                    "weight_decay",
                    bool(
                        {wd_label(w) for w in study["weight_decay"]}
                        & {wd_label(w) for w in other["weight_decay"]}
                    ),
                ),
                ("seeds", bool(set(study["seeds"]) & set(other["seeds"]))),
            )
            if not same
        ]
        if differs:
            problems.append(
                f"{where} differs in {', '.join(differs)} (U6 compares one architecture trained "
                "two ways, run for run): give both studies the same model and loss, and a "
                "dataset, a weight decay and a seed in common"
            )
        if other_name not in utilized:
            problems.append(
                f"{where} is not in utilization.studies, so its utilization is not measured: "
                f"add '{other_name}' there"
            )
    return problems


def utilization_problems(config: dict) -> list[str]:
    """Paper B: the listed studies exist, the headline energy is measured, labels are unique."""
    section = config["utilization"]
    problems = [
        f"config key 'utilization.studies': study '{study}' is not defined; "
        f"defined studies: {', '.join(sorted(config['studies']))}"
        for study in section["studies"]
        if study not in config["studies"]
    ]
    if section["energy"] not in section["energies"]:
        problems.append(
            f"config key 'utilization.energy': {section['energy']} is not one of "
            f"utilization.energies {section['energies']}"
        )
    for key in ("energies", "compress_energies"):
        labels = [energy_label(e) for e in section[key]]
        if len(set(labels)) != len(labels):
            problems.append(
                f"config key 'utilization.{key}': values {section[key]} give the same path "
                "label twice; use values that differ in their first 6 digits"
            )
    return problems


def eps_rank_column(eps: float) -> str:
    """Column name of the ε-rank, e.g. ``rank_eps_0.01``."""
    return f"rank_eps_{eps:g}"


def energy_label(energy: float) -> str:
    """An energy as written in output paths, e.g. ``energy~0.99`` (``%g``)."""
    return f"{float(energy):g}"


def wd_label(wd: float) -> str:
    """The weight decay as written in output paths, e.g. ``wd~0.0001`` (``%g``: 6 digits)."""
    return f"{float(wd):g}"


def dataset_spec(config: dict, dataset: str) -> dict:
    """Everything that defines a prepared dataset; for CIFAR-10 the md5 of its archive."""
    spec = {"name": dataset, **config["datasets"][dataset]}
    if spec["source"] == "cifar10":
        spec["archive_md5"] = config["data"]["cifar10"]["md5"] or CIFAR10_BINARY_MD5
    return spec


def run_spec(config: dict, study: str, dataset: str, wd: str, seed: str) -> dict:
    """Everything that defines one training run, and the hash that identifies it."""
    s = config["studies"][study]
    spec = {
        "study": study,
        "dataset": dataset_spec(config, dataset),
        "model": model_spec(s["model"]),
        "loss": s["loss"],
        "target_scale": s["target_scale"],
        "optimizer": s["optimizer"],
        "convergence": {k: v for k, v in s["convergence"].items() if k != "tol"},
        "stationarity": {
            "tol": s["convergence"]["tol"] or config["training"]["stationarity"]["tol"]
        },
        "weight_decay": float(wd),
        "seed": int(seed),
    }
    # Only a pre-training study's spec names its objective: supervised runs keep their hashes.
    if s["objective"] != "supervised":
        spec["objective"] = s["objective"]
        spec["pretraining"] = {k: v for k, v in s["pretraining"].items() if k != "compare_with"}
    spec["config_hash"] = spec_hash(spec)
    return spec


VIT_KEYS = ("dim", "heads", "patch_size", "pool")
ACTIVATION_KEYS = ("activation", "beta")


def model_spec(model: dict) -> dict:
    """The study's model section with only the keys its architecture reads: the ViT-only
    keys for a ViT (its blocks use GELU, so no activation), the activation for an MLP or CNN,
    and softplus's sharpness β only for softplus.
    """
    if model["arch"] == "vit":
        return {k: v for k, v in model.items() if k not in ACTIVATION_KEYS}
    spec = {k: v for k, v in model.items() if k not in VIT_KEYS}
    if spec["activation"] != "softplus":
        del spec["beta"]
    return spec


def spec_hash(spec: dict) -> str:
    """Short SHA-256 of the canonical JSON of a spec."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
