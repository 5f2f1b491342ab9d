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

.PHONY: setup demo test test-all bench clean scale scale-setup prefect-pg dask-cluster bench-scale

setup: $(VENV)/.setup-done

# torch first, in its own pip call: it takes the local CPU wheel; a bare torch requirement resolved
# together with the rest would pull several GB of CUDA packages.
$(VENV)/.setup-done: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	$(VENV)/bin/wordsmile models install
	touch $@

MODEL ?= $(WS)/models/sample-small

demo: setup
	$(VENV)/bin/wordsmile testdata make $(SAMPLE)
	$(VENV)/bin/wordsmile build manifests/sample.yaml -w $(WS)
	v=demo-$$(date -u +%Y%m%d%H%M%S); \
	  $(VENV)/bin/wordsmile release $(WS)/datasets/sample -w $(WS) --version $$v --tar && \
	  $(VENV)/bin/wordsmile verify $(WS)/releases/sample-$$v
	$(VENV)/bin/wordsmile train $(WS)/datasets/sample --config small --minutes 1.5 --out $(MODEL)
	$(VENV)/bin/wordsmile sample $(MODEL)/best.pt -n 2 --out $(MODEL)/generated.parquet \
	    --text "I can't believe you did that!" --text "Thank you so much." --text "What are you talking about?"
	$(VENV)/bin/wordsmile evaluate $(MODEL)/best.pt --split test
	$(VENV)/bin/wordsmile render $(MODEL)/best.pt --split test --index 0 --out $(MODEL)/test0.mp4 --curves $(MODEL)/test0.png
	@echo "demo done: dataset $(WS)/datasets/sample (card README.md, report.html), releases in $(WS)/releases, model and video in $(MODEL)"

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m "not gpu and not scale"

# scale-out (docs/scaling.md): Debian's postgresql (initdb/pg_ctl; as root the cluster runs as the
# `postgres` account) and the `[scale]` extra (asyncpg for Prefect on PostgreSQL, dask distributed)
scale-setup: setup
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { echo "install PostgreSQL first: apt-get install -y postgresql"; exit 1; }
	$(PY) -m pip install -q -e '.[test,scale]'

# the `scale` tests: Prefect on PostgreSQL, Dask scheduler/worker processes, CPU + GPU pools, faults
scale: scale-setup
	$(PY) -m pytest -q -m scale tests/test_scale.py

# a Prefect server on a throwaway PostgreSQL (127.0.0.1:4200) with pools and deployments; Ctrl-C stops it
prefect-pg: scale-setup
	$(PY) scripts/prefect_postgres.py --setup --port 4200

# `dask scheduler` on tcp://127.0.0.1:8786 and two single-threaded `dask worker` processes; Ctrl-C stops them
dask-cluster: scale-setup
	$(PY) scripts/dask_cluster.py --workers 2 --port 8786

bench-scale: scale-setup
	$(VENV)/bin/wordsmile testdata make $(SAMPLE)
	$(PY) benchmarks/bench_scale.py --sample $(SAMPLE)

bench: setup
	$(PY) benchmarks/bench_faces.py
	$(PY) benchmarks/bench_expressions.py
	$(PY) benchmarks/bench_model.py
	$(PY) benchmarks/bench_speech.py

clean:
	rm -rf demo $(SAMPLE) .pytest_cache
