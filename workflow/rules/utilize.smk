# Rules: utilize -> rankcollapse/utilize.py, compress -> rankcollapse/compress.py,
# aggregate_utilization -> rankcollapse/aggregate_utilization.py.
#
# Paper B (utilized rank): per run, the data-driven projection of every layer (`utilize`, on
# the CPU like measure) and compression to the utilized ranks at each energy of
# utilization.compress_energies (`compress`, fine-tuning on the training device); per study,
# the tidy tables the figures and claims U1-U6 read.


rule utilize:
    input:
        data="results/data/{dataset}.safetensors",
        model=f"{RUN_DIR}/model.safetensors",
        metadata=f"{RUN_DIR}/metadata.json",
    output:
        table=f"{RUN_DIR}/utilization.parquet",
        moments=f"{RUN_DIR}/moments.safetensors",
    log:
        f"results/logs/utilize/{RUN_ID}.log",
    conda:
        "../../envs/pipeline.yaml"
    threads: config["threads"]["measure"]
    resources:
        mem_mb=memory_mb(4000),
        runtime=run_statistics_minutes(60),
    params:
        energies=" ".join(map(str, UTILIZATION["energies"])),
        calibration=UTILIZATION["calibration_samples"],
        batch_size=config["measures"]["batch_size"],
    shell:
        "python -m rankcollapse utilize --data {input.data:q} --model {input.model:q}"
        " --metadata {input.metadata:q} --table {output.table:q}"
        " --moments {output.moments:q} --energies {params.energies}"
        " --calibration-samples {params.calibration} --batch-size {params.batch_size}"
        " --threads {threads} > {log:q} 2>&1"


rule compress:
    input:
        data="results/data/{dataset}.safetensors",
        model=f"{RUN_DIR}/model.safetensors",
        metadata=f"{RUN_DIR}/metadata.json",
        moments=f"{RUN_DIR}/moments.safetensors",
    output:
        table=f"{RUN_DIR}/compress/energy~{{energy}}.parquet",
    log:
        f"results/logs/compress/{RUN_ID}/energy~{{energy}}.log",
    conda:
        "../../envs/pipeline.yaml"
    threads: config["threads"]["train"]
    resources:
        mem_mb=memory_mb(4000),
        runtime=120,
        # Fine-tuning is training: on the training device.
        gpu=train_gpu,
    params:
        epochs=UTILIZATION["finetune_epochs"],
        lr=UTILIZATION["finetune_lr"],
        energies=" ".join(map(str, UTILIZATION["energies"])),
        tolerance=UTILIZATION["search"]["tolerance"],
        batch_size=config["measures"]["batch_size"],
        device=config["device"],
    shell:
        "python -m rankcollapse compress --data {input.data:q} --model {input.model:q}"
        " --metadata {input.metadata:q} --moments {input.moments:q}"
        " --energy {wildcards.energy} --table {output.table:q}"
        " --finetune-epochs {params.epochs} --finetune-lr {params.lr}"
        " --search-energies {params.energies} --tolerance {params.tolerance}"
        " --batch-size {params.batch_size} --device {params.device} --threads {threads}"
        " > {log:q} 2>&1"


rule aggregate_utilization:
    input:
        utilization=lambda wc: study_run_files(wc.study, "utilization.parquet"),
        compression=lambda wc: study_compression_tables(wc.study),
    output:
        utilization="results/tables/{study}/utilization.parquet",
        compression="results/tables/{study}/compression.parquet",
    log:
        "results/logs/aggregate_utilization/{study}.log",
    conda:
        "../../envs/pipeline.yaml"
    resources:
        mem_mb=memory_mb(2000),
        runtime=10,
    shell:
        "python -m rankcollapse aggregate-utilization --utilization {input.utilization:q}"
        " --compression {input.compression:q}"
        " --utilization-table {output.utilization:q}"
        " --compression-table {output.compression:q} > {log:q} 2>&1"
