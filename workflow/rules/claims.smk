# Rules: claims -> rankcollapse/claims/ (C1-C5 and P in rank_collapse.py, U1-U6 in utilization.py).
# claims_overview -> notebooks/claims_overview.py (one page of every claim's statistics).


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
            {
                **config["claims"],
                "utilization_energy": UTILIZATION["energy"],
                "u6_pairs": U6_PAIRS,
            }
        ),
    shell:
        "python -m rankcollapse claims --tables {input.tables:q}"
        " --utilization-tables {input.utilization:q}"
        " --compression-tables {input.compression:q}"
        " --thresholds {params.thresholds:q} --markdown {output.markdown:q}"
        " --json-path {output.json:q} > {log:q} 2>&1"


rule claims_overview:
    input:
        claims="results/claims.json",
        notebook=workflow.source_path("../../notebooks/claims_overview.py"),
    output:
        pdf=report(
            "results/figures/claims_overview.pdf",
            caption="../report/claims_overview.rst",
            category="Claims",
        ),
        png="results/figures/claims_overview.png",
        notebook="results/notebooks/claims_overview.ipynb",
        parameters="results/notebooks/claims_overview.parameters.yaml",
        template=temp("results/notebooks/claims_overview.template.ipynb"),
    log:
        log="results/logs/figure/claims_overview.log",
        executed="results/logs/figure/claims_overview.ipynb",
    conda:
        "../../envs/pipeline.yaml"
    resources:
        mem_mb=memory_mb(2000),
        runtime=10,
    params:
        parameters=lambda wc, input, output: json.dumps(
            {"claims": input.claims, "pdf": output.pdf, "png": output.png}
        ),
    shell:
        PAPERMILL
