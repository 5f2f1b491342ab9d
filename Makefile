# wordsmile: two commands.
#   make demo   set up a fresh machine and run the main job on the bundled sample
#   make test   set up and run the test suite (what CI runs)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
WS ?= demo/ws
SAMPLE ?= sample_data
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup demo test test-all bench clean

setup: $(VENV)/.setup-done

# torch first, in its own pip call: it takes the local CPU wheel; a bare torch requirement resolved
# together with the rest would pull several GB of CUDA packages (DESIGN.md §4).
$(VENV)/.setup-done: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	$(VENV)/bin/wordsmile models install
	touch $@

demo: setup
	$(VENV)/bin/wordsmile sample make $(SAMPLE)
	$(VENV)/bin/wordsmile build manifests/sample.yaml -w $(WS)
	$(VENV)/bin/wordsmile release $(WS)/datasets/sample --workspace $(WS) --version demo-$$(date +%Y%m%d%H%M%S)
	$(VENV)/bin/wordsmile verify $$(ls -d $(WS)/releases/sample-demo-* | tail -1)
	$(VENV)/bin/wordsmile train $(WS)/datasets/sample --config small --max-minutes 1.5 --out $(WS)/models/sample-small
	$(VENV)/bin/wordsmile sample $(WS)/models/sample-small/best.pt -n 1 --out $(WS)/models/sample-small/samples.json \
	    --text "I can't believe you did that!" --text "Thank you so much." --text "What are you talking about?"
	$(VENV)/bin/wordsmile evaluate $(WS)/models/sample-small/best.pt $(WS)/datasets/sample --split test
	$(VENV)/bin/wordsmile render $(WS)/models/sample-small/best.pt $(WS)/datasets/sample --text "Thank you so much." \
	    --out $(WS)/models/sample-small/render.mp4
	@echo "demo done: dataset $(WS)/datasets/sample, release $$(ls -d $(WS)/releases/sample-demo-* | tail -1), model $(WS)/models/sample-small"

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m "not gpu"

bench: setup
	$(PY) benchmarks/bench_faces.py
	$(PY) benchmarks/bench_expressions.py
	$(PY) benchmarks/bench_model.py

clean:
	rm -rf demo $(SAMPLE) .pytest_cache
