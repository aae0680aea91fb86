"""The resources the rules' jobs ask for, as Snakemake plans the tiny study: a GPU for training
and compression when the config's device is cuda, none for any other job nor on the CPU, and
twice the memory on a retry for every rule (README, "Running on a cluster").
"""

import re

import pytest
from factories import TINY
from workflow_runner import REPO, planned_jobs, snakemake

# Every rule of the workflow, so that one left out of the plan below is noticed; `train`
# stands for the training rules, one per pack of runs (planned_jobs names them so).
RULES = {"train"} | set(
    re.findall(
        r"^rule (\w+):",
        "".join(p.read_text() for p in [REPO / "Snakefile", *REPO.glob("workflow/rules/*.smk")]),
        re.MULTILINE,
    )
)
# The whole DAG, forced, and the results archive, which `all` does not build: a job of every rule.
EVERY_RULE = ("--forceall", "all", "results/results-archive.tar")
# Fine-tuning is training: compress asks for the training device too.
GPU_RULES = {"train", "compress"}


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    """The jobs of a dry run of every rule with these extra arguments (each planned once)."""
    plans = {}

    def planned(*args: str, env: dict | None = None) -> list[dict]:
        key = (args, tuple(sorted((env or {}).items())))
        if key not in plans:
            workdir = tmp_path_factory.mktemp("plan")
            done = snakemake(workdir, "-n", "-p", *EVERY_RULE, *args, configfile=TINY, env=env)
            assert done.returncode == 0, done.stderr[-3000:]
            plans[key] = planned_jobs(done.stdout)
            assert {job["rule"] for job in plans[key]} == RULES
        return plans[key]

    return planned


def asks_for_a_gpu(job: dict) -> bool:
    resources = job["resources"]
    return (
        int(resources.get("gpu", 0)) > 0
        or "gpu_model" in resources
        or "gpu" in resources.get("gres", "")
    )


def test_on_cuda_only_training_and_compression_ask_for_a_gpu(plan):
    jobs = plan("--config", "device=cuda", "--set-resources", "train:gpu_model=a100")
    for job in jobs:
        if job["rule"] in GPU_RULES:
            assert job["resources"].get("gpu") == "1", job
            assert " --device cuda " in job["shell"], job
        else:
            assert not asks_for_a_gpu(job), job
            # Measure, utilize and the rest compute on the CPU: no device to be steered by.
            assert "--device" not in (job["shell"] or ""), job
    # The GPU model goes with every training job (sbatch --gpus=a100:1).
    assert {j["resources"].get("gpu_model") for j in jobs if j["rule"] == "train"} == {"a100"}


def test_on_the_cpu_no_job_asks_for_a_gpu(plan):
    jobs = plan("--config", "device=cpu")
    assert not [job for job in jobs if asks_for_a_gpu(job)]
    assert all(" --device cpu " in j["shell"] for j in jobs if j["rule"] in GPU_RULES)


def test_auto_asks_for_no_gpu_where_none_is_visible(plan):
    jobs = plan("--config", "device=auto", env={"CUDA_VISIBLE_DEVICES": ""})
    assert not [job for job in jobs if asks_for_a_gpu(job)]
    assert all(" --device auto " in j["shell"] for j in jobs if j["rule"] in GPU_RULES)


def test_every_rule_asks_for_twice_its_memory_on_the_second_attempt(plan):
    # --attempt is the attempt Snakemake evaluates resources at (2: the first retry).
    first, second = (
        {(job["rule"], job["output"]): job for job in plan("--config", "device=cpu", *attempt)}
        for attempt in ((), ("--attempt", "2"))
    )
    assert first.keys() == second.keys()
    for key, job in first.items():
        if job["shell"] is None:  # rule all runs nothing
            continue
        memory = int(job["resources"].get("mem_mb", 0))  # 0: the rule sets none
        assert memory > 0 and int(second[key]["resources"]["mem_mb"]) == 2 * memory, key
