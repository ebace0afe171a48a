#!/usr/bin/env bash
# Profile-guided build of the C core.
#   scripts/pgo_build.sh train   instrumented in-place build + training run; leaves the profile
#                                in $REGISTRY_CORE_PGO_DIR (default build/pgo). cibuildwheel runs
#                                this as before-build, then builds the wheel with
#                                REGISTRY_CORE_PGO=use.
#   scripts/pgo_build.sh local   train, then rebuild in place with the profile (make pgo).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
export REGISTRY_CORE_PGO_DIR="${REGISTRY_CORE_PGO_DIR:-$PWD/build/pgo}"
rm -rf "$REGISTRY_CORE_PGO_DIR" build/flavour-pgo*
mkdir -p "$REGISTRY_CORE_PGO_DIR"
REGISTRY_CORE_PGO=generate "$PY" setup.py --quiet build_ext --inplace --force
PYTHONPATH=src "$PY" scripts/pgo_train.py
ls "$REGISTRY_CORE_PGO_DIR" | grep -q . || { echo "PGO: no profile written" >&2; exit 1; }
if [ "${1:-local}" = "local" ]; then
  rm -rf build/flavour-pgo*
  REGISTRY_CORE_PGO=use "$PY" setup.py --quiet build_ext --inplace --force
  PYTHONPATH=src "$PY" -c "import registry_core as r; i = r.build_info(); assert i['pgo'], i; print('PGO build:', i['cflags'])"
fi
