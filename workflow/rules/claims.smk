rule claims:
    input:
        expand("results/tables/{study}/layers.parquet", study=config["studies"]),
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
        thresholds=json.dumps(config["claims"]),
    shell:
        "python -m rankcollapse claims --thresholds {params.thresholds:q}"
        " --markdown {output.markdown:q} --json {output.json:q} {input:q} > {log:q} 2>&1"
