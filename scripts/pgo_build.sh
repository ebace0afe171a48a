#!/usr/bin/env bash
# Profile-guided build of the C core.
#   scripts/pgo_build.sh train   instrumented in-place build + training run; leaves the profile
#                                in $REGISTRY_CORE_PGO_DIR (default build/pgo). cibuildwheel runs
#                                this as before-build, then builds the wheel with
#                                REGISTRY_CORE_PGO=use (scripts/build_wheel_pgo.sh does the same).
#   scripts/pgo_build.sh local   train, then rebuild in place with the profile (make pgo).
# The training run needs the package's runtime dependencies: missing ones are installed into
# $PYTHON's environment (a build venv), never silently skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
export REGISTRY_CORE_PGO_DIR="${REGISTRY_CORE_PGO_DIR:-$PWD/build/pgo}"
rm -rf "$REGISTRY_CORE_PGO_DIR" build/flavour-pgo*
mkdir -p "$REGISTRY_CORE_PGO_DIR"
if ! "$PY" -c "import cffi, zstandard, brotli, xxhash, cramjam, httpx" 2>/dev/null; then
  # shellcheck disable=SC2046  # one argument per requirement
  "$PY" -m pip install --quiet $("$PY" scripts/pgo_train.py --print-deps)
fi
REGISTRY_CORE_PGO=generate "$PY" setup.py --quiet build_ext --inplace --force
PYTHONPATH=src "$PY" scripts/pgo_train.py
ls "$REGISTRY_CORE_PGO_DIR" | grep -q . || { echo "PGO: no profile written" >&2; exit 1; }
# gcc names each profile after its object file's absolute path, and setup.py gives each flavour
# its own build dir (build/flavour-pgogenerate vs build/flavour-pgouse): without this rename the
# use pass finds no profile and -Wno-missing-profile hides it (it then only adds -funroll-loops
# and friends: +43% text, no profile).
for f in "$REGISTRY_CORE_PGO_DIR"/*flavour-pgogenerate*; do
  [ -e "$f" ] || continue  # clang: no gcda files (raw profiles, merged below)
  mv "$f" "${f//flavour-pgogenerate/flavour-pgouse}"
done
# clang writes *.profraw that -fprofile-use=DIR reads only once merged into DIR/default.profdata
# (macOS wheels; not run on this Linux/gcc machine).
if ls "$REGISTRY_CORE_PGO_DIR"/*.profraw >/dev/null 2>&1; then
  profdata=$(command -v llvm-profdata || xcrun -f llvm-profdata)
  "$profdata" merge -o "$REGISTRY_CORE_PGO_DIR/default.profdata" "$REGISTRY_CORE_PGO_DIR"/*.profraw
fi
rm -f src/registry_core/_native/_core*.so  # the instrumented module must not reach a wheel
if [ "${1:-local}" = "local" ]; then
  rm -rf build/flavour-pgouse
  REGISTRY_CORE_PGO=use "$PY" setup.py --quiet build_ext --inplace --force
  PYTHONPATH=src "$PY" -c "import registry_core as r; i = r.build_info(); assert i['pgo'], i; print('PGO build:', i['cflags'])"
fi
