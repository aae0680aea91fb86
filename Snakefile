from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


# A results archive imported here (`make import`) brings its own config, and its tables are
# this DAG's sources: only the figures, claims and report are built from them (paths as in
# rankcollapse.archive, which is importable only once common.smk has set the path).
FROM_ARCHIVE = Path("results/archive/manifest.json").is_file()

# The default study, unless configs are named with --configfile: merging the two would run
# the default's studies as well.
if not workflow.overwrite_configfiles:

    configfile: "results/archive/config.yaml" if FROM_ARCHIVE else "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


if not FROM_ARCHIVE:

    include: "workflow/rules/data.smk"
    include: "workflow/rules/train.smk"
    include: "workflow/rules/measure.smk"
    include: "workflow/rules/utilize.smk"
    include: "workflow/rules/archive.smk"


include: "workflow/rules/figures.smk"
include: "workflow/rules/claims.smk"


rule all:
    default_target: True
    input:
        all_targets(),
