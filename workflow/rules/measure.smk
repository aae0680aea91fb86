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
        runtime=60,
    params:
        run_dir=lambda wc, input: Path(input.model).parent,
        eps=" ".join(map(str, config["measures"]["eps"])),
        batch_size=config["measures"]["batch_size"],
    shell:
        "python -m rankcollapse measure --run-dir {params.run_dir:q} --data {input.data:q}"
        " --layers {output.layers:q} --spectra {output.spectra:q} --eps {params.eps}"
        " --batch-size {params.batch_size} --device cpu --threads {threads}"
        " > {log:q} 2>&1"


rule aggregate:
    input:
        study_layer_tables,
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
        "python -m rankcollapse aggregate --out {output.layers:q} --history {output.history:q}"
        " --spectra {output.spectra:q} {input:q} > {log:q} 2>&1"
