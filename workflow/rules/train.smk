# Rules: train -> rankcollapse/train.py.


rule train:
    input:
        data="results/data/{dataset}.safetensors",
    output:
        model=f"{RUN_DIR}/model.safetensors",
        history=f"{RUN_DIR}/history.csv",
        metadata=f"{RUN_DIR}/metadata.json",
    log:
        f"results/logs/train/{RUN_ID}.log",
    conda:
        "../../envs/pipeline.yaml"
    threads: config["threads"]["train"]
    resources:
        mem_mb=memory_mb(4000),
        runtime=120,
        gpu=train_gpu,
    params:
        spec=lambda wc: json.dumps(run_spec(config, **wc)),
        # Not an output: it exists only while the job runs, so that a killed job resumes.
        checkpoint=f"{RUN_DIR}/checkpoint.safetensors",
        device=config["device"],
        checkpoint_every=config["training"]["checkpoint_every"],
        divergence=config["training"]["divergence"],
    shell:
        "python -m rankcollapse train --spec {params.spec:q} --data {input.data:q}"
        " --model {output.model:q} --history {output.history:q}"
        " --metadata {output.metadata:q} --checkpoint-path {params.checkpoint:q}"
        " --device {params.device} --threads {threads}"
        " --checkpoint-every {params.checkpoint_every} --divergence {params.divergence}"
        " > {log:q} 2>&1"
