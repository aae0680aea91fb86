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
        "python -m rankcollapse claims --thresholds {params.thresholds:q}"
        " --markdown {output.markdown:q} --json {output.json:q} {input.tables:q}"
        " --utilization {input.utilization:q} --compression {input.compression:q}"
        " > {log:q} 2>&1"
