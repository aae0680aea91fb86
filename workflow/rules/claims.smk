# Rules: claims -> rankcollapse/claims/ (C1-C5 in rank_collapse.py, U1-U5 in utilization.py).


rule claims:
    input:
        tables=expand("results/tables/{study}/layers.parquet", study=config["studies"]),
        utilization=expand(
            "results/tables/{study}/utilization.parquet", study=UTILIZATION["studies"]
        ),
        compression=expand(
            "results/tables/{study}/compression.parquet", study=UTILIZATION["studies"]
        ),
    output:
        markdown=report(
            "results/claims.md", caption="../report/claims.rst", category="Claims"
        ),
        json="results/claims.json",
    log:
        "results/logs/claims.log",
    conda:
        "../../envs/pipeline.yaml"
    resources:
        mem_mb=memory_mb(2000),
        runtime=10,
    params:
        thresholds=json.dumps(
            {**config["claims"], "utilization_energy": UTILIZATION["energy"]}
        ),
    shell:
        "python -m rankcollapse claims --tables {input.tables:q}"
        " --utilization-tables {input.utilization:q}"
        " --compression-tables {input.compression:q}"
        " --thresholds {params.thresholds:q} --markdown {output.markdown:q}"
        " --json-path {output.json:q} > {log:q} 2>&1"
