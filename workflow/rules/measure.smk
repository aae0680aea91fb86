# Rules: measure -> rankcollapse/measure.py, aggregate -> rankcollapse/aggregate.py.
#
# Measures run on the CPU whatever the training device: float64 spectra and streaming sums,
# the same numbers wherever the model was trained, and no GPU held by a job that barely uses it
# (on a cluster or a one-GPU workstation they run beside the training jobs).
rule measure:
    input:
        data="results/data/{dataset}.safetensors",
        model=f"{RUN_DIR}/model.safetensors",
        metadata=f"{RUN_DIR}/metadata.json",
    output:
        layers=f"{RUN_DIR}/layers.parquet",
        spectra=f"{RUN_DIR}/spectra.safetensors",
    log:
        f"results/logs/measure/{RUN_ID}.log",
    conda:
        "../../envs/pipeline.yaml"
    threads: config["threads"]["measure"]
    resources:
        mem_mb=memory_mb(4000),
        runtime=run_statistics_minutes(60),
    params:
        eps=" ".join(map(str, config["measures"]["eps"])),
        batch_size=config["measures"]["batch_size"],
    shell:
        "python -m rankcollapse measure --data {input.data:q} --model {input.model:q}"
        " --metadata {input.metadata:q} --layers {output.layers:q}"
        " --spectra {output.spectra:q} --eps {params.eps}"
        " --batch-size {params.batch_size} --threads {threads}"
        " > {log:q} 2>&1"


rule aggregate:
    input:
        layers=lambda wc: study_run_files(wc.study, "layers.parquet"),
        metadata=lambda wc: study_run_files(wc.study, "metadata.json"),
        history=lambda wc: study_run_files(wc.study, "history.csv"),
        spectra=lambda wc: study_run_files(wc.study, "spectra.safetensors"),
    output:
        layers="results/tables/{study}/layers.parquet",
        history="results/tables/{study}/history.parquet",
        spectra="results/tables/{study}/spectra.parquet",
    log:
        "results/logs/aggregate/{study}.log",
    conda:
        "../../envs/pipeline.yaml"
    resources:
        mem_mb=memory_mb(2000),
        runtime=10,
    shell:
        "python -m rankcollapse aggregate --layers {input.layers:q}"
        " --metadata {input.metadata:q} --history {input.history:q}"
        " --spectra {input.spectra:q} --layers-table {output.layers:q}"
        " --history-table {output.history:q} --spectra-table {output.spectra:q}"
        " > {log:q} 2>&1"
