"""Config validation against the schema, and the per-run specifications derived from it.

Imported by the Snakefile, so it needs nothing beyond what Snakemake itself installs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
import yaml

SPECTRAL_COLUMNS = ("rank_fro", "stable_rank", "effective_rank")
# The CIFAR-10 binary archive, looked for in data.mirror or its cifar10/ folder.
CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR10_FOLDERS = ("", "cifar10")


class ConfigError(ValueError):
    """The config breaks the schema or refers to something that does not exist."""


def _with_defaults(validator_class):
    """A validator class that fills in each missing property's ``default`` while validating."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = json.loads(json.dumps(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


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
    if error.validator == "type" and isinstance(error.instance, str) and _is_float(error.instance):
        message += f"; YAML reads {error.instance} as text: write it with a dot, e.g. 1.0e-3"
    description = error.schema.get("description")
    hint = f" ({description.strip()})" if description and error.validator != "required" else ""
    return f"config key '{key}': {message}{hint}"


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


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
    """A config file read with safe YAML loading, refusing duplicate keys."""
    with open(path) as file:
        loader = _UniqueKeyLoader(file)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()


def validate_config(config: dict, schema_path: str | Path) -> None:
    """Check ``config`` against the schema, filling in defaults in place; raise ConfigError
    listing every problem.
    """
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = _with_defaults(jsonschema.validators.validator_for(schema))(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    problems = [describe(e) for e in errors]
    if not problems:
        problems = semantic_problems(config)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


def semantic_problems(config: dict) -> list[str]:
    """Problems the schema cannot express: references between sections, clashing labels."""
    problems = []
    for name, study in config["studies"].items():
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
    allowed = list(SPECTRAL_COLUMNS) + [f"rank_eps_{e:g}" for e in config["measures"]["eps"]]
    for section in ("figures", "claims"):
        if config[section]["rank_measure"] not in allowed:
            problems.append(
                f"config key '{section}.rank_measure': '{config[section]['rank_measure']}' "
                f"is not a rank column; allowed: {', '.join(allowed)}"
            )
    problems += utilization_problems(config)
    low, high = config["claims"]["slope_range"]
    if low >= high:
        problems.append(
            f"config key 'claims.slope_range': [{low}, {high}] is empty; give [low, high]"
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


def energy_label(energy: float) -> str:
    """An energy as written in output paths, e.g. ``energy~0.99`` (``%g``)."""
    return f"{float(energy):g}"


def wd_label(wd: float) -> str:
    """The weight decay as written in output paths, e.g. ``wd~0.0001`` (``%g``: 6 digits)."""
    return f"{float(wd):g}"


def dataset_spec(config: dict, dataset: str) -> dict:
    """Everything that defines a prepared dataset."""
    return {"name": dataset, **config["datasets"][dataset]}


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
        "weight_decay": float(wd),
        "seed": int(seed),
    }
    spec["config_hash"] = spec_hash(spec)
    return spec


VIT_KEYS = ("dim", "heads", "patch_size", "pool")


def model_spec(model: dict) -> dict:
    """The study's model section; the ViT-only keys only for a ViT, so that adding them left
    the spec (and hash) of every MLP and CNN run unchanged.
    """
    if model["arch"] == "vit":
        return dict(model)
    return {k: v for k, v in model.items() if k not in VIT_KEYS}


def spec_hash(spec: dict) -> str:
    """Short SHA-256 of the canonical JSON of a spec."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
