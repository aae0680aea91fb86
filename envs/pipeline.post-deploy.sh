#!/usr/bin/env bash
# Register the Jupyter kernel the figure rules name, inside the new Conda environment.
set -euo pipefail
python -m ipykernel install --sys-prefix --name rankcollapse --display-name "rankcollapse"
