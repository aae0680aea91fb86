# Rules: train_<study>_<n> (one per pack of runs, training_packs in common.smk) ->
# rankcollapse/train.py.
#
# A pack's runs train in one job, stacked (docs/performance.md); each run keeps its own
# files, so every later rule reads a run as before and any run is a target. A pack's outputs
# are known only from the config, so each pack is a rule of its own; `--set-resources train:`
# (and a profile's `set-resources: train:`) applies to all of them.
TRAIN_RESOURCES = workflow.resource_settings.overwrite_resources.get("train", {})


for index, pack in enumerate(training_packs(), start=1):
    first = pack[0]

    rule:
        name:
            pack_rule_name(index, pack)
        input:
            data=f"results/data/{first['dataset']}.safetensors",
        output:
            model=[f"{RUN_DIR}/model.safetensors".format(**run) for run in pack],
            history=[f"{RUN_DIR}/history.csv".format(**run) for run in pack],
            metadata=[f"{RUN_DIR}/metadata.json".format(**run) for run in pack],
        log:
            pack=f"results/logs/train/{first['study']}/{first['dataset']}/pack{index}.log",
            runs=[f"results/logs/train/{RUN_ID}.log".format(**run) for run in pack],
        conda:
            "../../envs/pipeline.yaml"
        threads: config["threads"]["train"]
        resources:
            mem_mb=memory_mb(4000),
            runtime=120,
            gpu=train_gpu,
        params:
            runs=pack_runs_json(pack),
            device=config["device"],
            checkpoint_every=config["training"]["checkpoint_every"],
            divergence=config["training"]["divergence"],
        shell:
            "python -m rankcollapse train --runs {params.runs:q} --data {input.data:q}"
            " --device {params.device} --threads {threads}"
            " --checkpoint-every {params.checkpoint_every} --divergence {params.divergence}"
            " > {log.pack:q} 2>&1"

    workflow.get_rule(pack_rule_name(index, pack)).resources.update(TRAIN_RESOURCES)
