# Rules: figure and figure_utilization -> notebooks/<figure>.py, figure_pretraining ->
# notebooks/ssl_utilization.py, executed by papermill.


NOTEBOOKS = {f: workflow.source_path(f"../../notebooks/{f}.py") for f in FIGURES}
# Figures that draw what a claim decides on get the config's claims section too, so that they
# compute the claim's number from the claim's measures and runs.
FIGURES_WITH_CLAIMS = {"bound", "rank_vs_variability", "proportionality"}
# A notebook runs as papermill from a jupytext template with the project's kernel. It is
# executed into the log folder first: Snakemake deletes a failed job's outputs but keeps its
# logs, so a notebook that fails stays with the traceback under the failing cell.
PAPERMILL = (
    "(printf '%s\\n' {params.parameters:q} > {output.parameters:q}"
    " && jupytext --to ipynb --set-kernel rankcollapse --output {output.template:q} {input.notebook:q}"
    " && (papermill --kernel rankcollapse --parameters_file {output.parameters:q}"
    " {output.template:q} {log.executed:q}"
    " || {{ printf 'figure notebook %s failed in the cell named above; the executed"
    " notebook, with the traceback under that cell, is kept at %s\\n'"
    ' "notebooks/$(basename {input.notebook:q})" {log.executed:q}; exit 1; }})'
    " && cp {log.executed:q} {output.notebook:q}) > {log.log:q} 2>&1"
)


rule figure:
    input:
        table="results/tables/{study}/layers.parquet",
        history="results/tables/{study}/history.parquet",
        spectra="results/tables/{study}/spectra.parquet",
        notebook=lambda wc: NOTEBOOKS[wc.figure],
    output:
        pdf=report(
            "results/figures/{study}/{figure}.pdf",
            caption="../report/figure.rst",
            category="Figures",
            subcategory="{study}",
            labels={"study": "{study}", "figure": "{figure}"},
        ),
        png="results/figures/{study}/{figure}.png",
        notebook="results/notebooks/{study}/{figure}.ipynb",
        parameters="results/notebooks/{study}/{figure}.parameters.yaml",
        template=temp("results/notebooks/{study}/{figure}.template.ipynb"),
    log:
        log="results/logs/figure/{study}/{figure}.log",
        executed="results/logs/figure/{study}/{figure}.ipynb",
    conda:
        "../../envs/pipeline.yaml"
    resources:
        mem_mb=memory_mb(2000),
        runtime=10,
    params:
        parameters=lambda wc, input, output: json.dumps(
            {
                "study": wc.study,
                "table": input.table,
                "history": input.history,
                "spectra": input.spectra,
                "pdf": output.pdf,
                "png": output.png,
                **config["figures"],
                **(
                    {"claims": config["claims"]}
                    if wc.figure in FIGURES_WITH_CLAIMS
                    else {}
                ),
            }
        ),
    shell:
        PAPERMILL


# ---------------------------------------------------------------- paper B (utilized rank)
NOTEBOOKS_UTILIZATION = {
    f: workflow.source_path(f"../../notebooks/{f}.py") for f in FIGURES_UTILIZATION
}


rule figure_utilization:
    input:
        utilization="results/tables/{study}/utilization.parquet",
        compression="results/tables/{study}/compression.parquet",
        notebook=lambda wc: NOTEBOOKS_UTILIZATION[wc.figure_b],
    output:
        pdf=report(
            "results/figures/{study}/{figure_b}.pdf",
            caption="../report/utilization.rst",
            category="Figures",
            subcategory="{study}",
            labels={"study": "{study}", "figure": "{figure_b}"},
        ),
        png="results/figures/{study}/{figure_b}.png",
        notebook="results/notebooks/{study}/{figure_b}.ipynb",
        parameters="results/notebooks/{study}/{figure_b}.parameters.yaml",
        template=temp("results/notebooks/{study}/{figure_b}.template.ipynb"),
    log:
        log="results/logs/figure/{study}/{figure_b}.log",
        executed="results/logs/figure/{study}/{figure_b}.ipynb",
    conda:
        "../../envs/pipeline.yaml"
    resources:
        mem_mb=memory_mb(2000),
        runtime=10,
    params:
        parameters=lambda wc, input, output: json.dumps(
            {
                "study": wc.study,
                "utilization": input.utilization,
                "compression": input.compression,
                "pdf": output.pdf,
                "png": output.png,
                "energy": UTILIZATION["energy"],
            }
        ),
    shell:
        PAPERMILL


rule figure_pretraining:
    input:
        pretrained="results/tables/{study}/utilization.parquet",
        supervised=lambda wc: f"results/tables/{U6_PAIRS[wc.study]}/utilization.parquet",
        notebook=workflow.source_path("../../notebooks/ssl_utilization.py"),
    output:
        pdf=report(
            "results/figures/{study}/ssl_utilization.pdf",
            caption="../report/ssl_utilization.rst",
            category="Figures",
            subcategory="{study}",
            labels={"study": "{study}", "figure": "ssl_utilization"},
        ),
        png="results/figures/{study}/ssl_utilization.png",
        notebook="results/notebooks/{study}/ssl_utilization.ipynb",
        parameters="results/notebooks/{study}/ssl_utilization.parameters.yaml",
        template=temp("results/notebooks/{study}/ssl_utilization.template.ipynb"),
    log:
        log="results/logs/figure/{study}/ssl_utilization.log",
        executed="results/logs/figure/{study}/ssl_utilization.ipynb",
    # Only for the studies U6 compares: any other study has no supervised twin to draw.
    wildcard_constraints:
        study=one_of(U6_PAIRS),
    conda:
        "../../envs/pipeline.yaml"
    resources:
        mem_mb=memory_mb(2000),
        runtime=10,
    params:
        parameters=lambda wc, input, output: json.dumps(
            {
                "study": wc.study,
                "compared_with": U6_PAIRS[wc.study],
                "pretrained": input.pretrained,
                "supervised": input.supervised,
                "pdf": output.pdf,
                "png": output.png,
                "energy": UTILIZATION["energy"],
            }
        ),
    shell:
        PAPERMILL
