# registry-core: the two commands of the set-up contract are `make demo` and `make test`.
# Everything runs from a virtual environment this Makefile creates (.venv); nothing is
# installed by hand.

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
ASAN_VENV := .venv-asan
EXTRAS  ?= test,server
PYTEST_ARGS ?=
NATIVE_DEPS := pyproject.toml setup.py src/registry_core/_version.py \
               src/registry_core/_native/_build.py $(wildcard csrc/*.c csrc/*.h)

.PHONY: all install native demo test sanitize bench corpus lint fuzz fuzz-c pgo wheel wheel-pgo clean

all: test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip "setuptools>=77" wheel "cffi>=1.16"

# Editable install; the C core is compiled in place. Re-run whenever C sources change.
$(STAMP): $(PY) $(NATIVE_DEPS)
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	@touch $@

install: $(STAMP)

# Quick rebuild of the C core only (after editing csrc/).
native: $(STAMP)
	$(PY) setup.py --quiet build_ext --inplace

demo: $(STAMP)
	$(PY) -m registry_core.demo

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The C-facing tests against a core built with AddressSanitizer + UBSan, installed (not
# editable) into its own venv so the normal in-place build is left alone.
sanitize:
	test -x $(ASAN_VENV)/bin/python || $(PYTHON) -m venv $(ASAN_VENV)
	$(ASAN_VENV)/bin/python -m pip install --quiet --upgrade pip "setuptools>=77" wheel "cffi>=1.16"
	$(ASAN_VENV)/bin/python -m pip install --quiet '.[test]'
	REGISTRY_CORE_SANITIZE=1 $(ASAN_VENV)/bin/python -m pip install --quiet --force-reinstall --no-deps .
	cd tests && LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  REGISTRY_CORE_EXPECT_SANITIZED=1 HYPOTHESIS_PROFILE=ci \
	  ../$(ASAN_VENV)/bin/python -m pytest -q -p no:cacheprovider -m native --rootdir=.. -c ../pyproject.toml .

corpus: $(STAMP)
	$(PY) benchmarks/fetch_corpus.py

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[$(EXTRAS),bench]'
	$(PY) benchmarks/fetch_corpus.py
	$(PY) benchmarks/bench_chunking.py
	$(PY) benchmarks/bench_delta.py
	$(PY) benchmarks/bench_compress.py
	$(PY) benchmarks/bench_flags.py
	$(PY) benchmarks/bench_transport.py
	$(PY) benchmarks/bench_index.py

# Lint, one formatter for the whole tree, and types; versions pinned by the `lint` extra.
LINT_PATHS := src tests benchmarks fuzz scripts
lint: $(STAMP)
	$(PY) -m pip install --quiet -e '.[$(EXTRAS),lint]'
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m ruff format --check $(LINT_PATHS)
	$(PY) -m mypy

# Profile-guided build of the C core in place (train, rebuild with the profile).
pgo: $(STAMP)
	PYTHON=$(abspath $(PY)) scripts/pgo_build.sh local

# A profile-guided manylinux wheel of HEAD (and the plain -O3 wheel beside it, for
# benchmarks/bench_pgo.py), each installed in a fresh venv; the C-facing tests run against the
# installed PGO wheel. Under build/wheel-pgo; WHEEL_PGO_PYTEST_ARGS=. runs the whole suite.
wheel-pgo:
	PYTHON=$(PYTHON) scripts/build_wheel_pgo.sh

# Coverage-guided fuzzing of apply / layout / bundle parsing (atheris), 5 minutes, with the
# harness's memory/time oracle, under small and default limits.
fuzz: $(STAMP)
	$(PY) -m pip install --quiet -e '.[$(EXTRAS),fuzz]'
	$(PY) fuzz/fuzz_apply.py --mode fixup --limits small -max_total_time=150
	$(PY) fuzz/fuzz_apply.py --mode fixup --limits default -max_total_time=150
	$(PY) fuzz/fuzz_apply.py --mode deflate -max_total_time=150
	$(PY) fuzz/fuzz_exe.py -max_total_time=150

# libFuzzer targets for the C core itself (clang; instrumented, with ASan and UBSan) with a
# memory/time oracle (-rss_limit_mb, -timeout); fuzz_delta_apply in both limits modes, the
# deflate tokenizer, the deflate reconstruction and the executable transform: 6 x
# FUZZ_SECONDS in all.
FUZZ_SECONDS ?= 120
FUZZ_RSS_MB  ?= 512
FUZZ_TIMEOUT ?= 10
FUZZ_RUN := -rss_limit_mb=$(FUZZ_RSS_MB) -timeout=$(FUZZ_TIMEOUT) -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=build/fuzz/
fuzz-c:
	mkdir -p build/fuzz build/fuzz/corpus-apply build/fuzz/corpus-cdc build/fuzz/corpus-dtok build/fuzz/corpus-drec build/fuzz/corpus-exe
	for t in delta_apply cdc deflate_tokens deflate_reconstruct exe; do \
	  clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	    -Icsrc -DRC_VERSION='"fuzz"' -DRC_CFLAGS='"fuzz"' csrc/*.c fuzz/c/fuzz_$$t.c -lz \
	    -o build/fuzz/fuzz_$$t || exit 1; \
	done
	RC_FUZZ_LIMITS=default build/fuzz/fuzz_delta_apply $(FUZZ_RUN) -max_len=4096 build/fuzz/corpus-apply
	RC_FUZZ_LIMITS=small build/fuzz/fuzz_delta_apply $(FUZZ_RUN) -max_len=4096 build/fuzz/corpus-apply
	build/fuzz/fuzz_cdc $(FUZZ_RUN) -max_len=65536 build/fuzz/corpus-cdc
	build/fuzz/fuzz_deflate_tokens $(FUZZ_RUN) -max_len=16384 build/fuzz/corpus-dtok
	build/fuzz/fuzz_deflate_reconstruct $(FUZZ_RUN) -max_len=16384 build/fuzz/corpus-drec
	build/fuzz/fuzz_exe $(FUZZ_RUN) -max_len=65536 build/fuzz/corpus-exe

clean:
	rm -rf build dist *.egg-info src/*.egg-info src/registry_core/_native/_core*.so src/registry_core/_native/_core.c src/registry_core/_native/*.o .pytest_cache
