#!/bin/bash
# Wheels for what the GPU image lacks (Python 3.12, x86-64), at the lock's versions, into .whl/ (ignored by
# git; named in the device call's `carry`), with their dependencies less those the image already holds.
#   bash benchmarks/gpu/fetch_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
version() { grep -E "^$1==" requirements/lock.txt | cut -d= -f3; }
rm -rf .whl && mkdir -p .whl
platforms=""
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms="$platforms --platform $p"
done
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp $platforms -d .whl \
  "jsonargparse==$(version jsonargparse)" "docstring-parser==$(version docstring-parser)" \
  "omegaconf==$(version omegaconf)" "mlflow-skinny==$(version mlflow-skinny)" "rapidfuzz==$(version rapidfuzz)"
# The image's own packages stay as they are (one version of each, or pip stops the install).
for have in click cloudpickle packaging protobuf pyyaml requests typing_extensions urllib3 certifi idna \
            charset_normalizer attrs zipp six python_dateutil pyarrow numpy anyio h11 sniffio starlette \
            markupsafe jinja2 werkzeug annotated_doc; do
  rm -f .whl/${have}-*.whl .whl/$(echo $have | tr _ -)-*.whl
done
ls .whl | sed 's/-py.*//; s/-cp3.*//' | tr '\n' ' '; echo; du -sh .whl
