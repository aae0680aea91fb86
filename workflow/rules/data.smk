# Rules: fetch_raw -> rankcollapse/fetch_raw.py,
# prepare_dataset -> rankcollapse/prepare_dataset.py.


rule fetch_raw:
    output:
        directory("results/raw/{source}"),
    log:
        "results/logs/fetch_raw/{source}.log",
    conda:
        "../../envs/pipeline.yaml"
    resources:
        mem_mb=memory_mb(2000),
        runtime=30,
    params:
        mirror=config["data"]["mirror"] or "",
        download="--download" if config["data"]["download"] else "--no-download",
        offline="--offline" if config["data"]["offline_sources"] else "--no-offline",
        cifar10_url=config["data"]["cifar10"]["url"] or "",
        cifar10_md5=config["data"]["cifar10"]["md5"] or "",
    shell:
        "python -m rankcollapse fetch-raw --source {wildcards.source} --dest {output:q}"
        " --mirror={params.mirror:q} {params.download} {params.offline}"
        " --cifar10-url={params.cifar10_url:q} --cifar10-md5={params.cifar10_md5}"
        " > {log:q} 2>&1"


rule prepare_dataset:
    input:
        raw=raw_input,
    output:
        data="results/data/{dataset}.safetensors",
    log:
        "results/logs/prepare_dataset/{dataset}.log",
    conda:
        "../../envs/pipeline.yaml"
    resources:
        mem_mb=memory_mb(4000),
        runtime=30,
    params:
        spec=lambda wc: json.dumps(dataset_spec(config, wc.dataset)),
        raw=lambda wc, input: input.raw or "",
    shell:
        "python -m rankcollapse prepare-dataset --spec {params.spec:q} --raw={params.raw:q}"
        " --out {output.data:q} > {log:q} 2>&1"
