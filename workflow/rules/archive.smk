# Rules: export_archive -> rankcollapse.export_archive (`make archive`; not part of `all`).


rule export_archive:
    input:
        files=archive_files(),
        claims=["results/claims.md", "results/claims.json"],
    output:
        archive="results/results-archive.tar",
        checksum="results/results-archive.tar.sha256",
    log:
        "results/logs/export_archive.log",
    conda:
        "../../envs/pipeline.yaml"
    resources:
        mem_mb=memory_mb(1000),
        runtime=30,
    params:
        config=json.dumps(config),
    shell:
        "python -m rankcollapse export-archive --files {input.files:q}"
        " --claims {input.claims:q} --config {params.config:q}"
        " --out {output.archive:q} --checksum {output.checksum:q} > {log:q} 2>&1"
