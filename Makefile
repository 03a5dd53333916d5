# coopscore: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.8
UV := .tools/bin/uv
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := .venv

.PHONY: install demo test serve bento mlflow-ui benchmark benchmark-ingest benchmark-own-table benchmark-api benchmark-ranking benchmark-advice benchmark-reject-inference benchmark-monitoring benchmark-scale fuzz clean

install: .venv/.installed  ## the environment alone, from uv.lock

.venv/.installed: uv.lock pyproject.toml
	@test -x $(UV) || { $(PYTHON) -m venv .tools && .tools/bin/pip install --quiet uv==$(UV_VERSION); }
	$(UV) sync --frozen --all-groups --all-extras
	@touch $@

demo: install  ## generate, ingest, features, train, register, then serve on :3000
	.venv/bin/coopscore demo $(if $(REBUILD),--rebuild,)

test: install  ## the whole test suite
	.venv/bin/pytest

serve: install
	.venv/bin/coopscore serve

bento: install  ## build the Bento (code, locked deps, champion versions as labels) and print its tag
	.venv/bin/coopscore bento

mlflow-ui: install  ## the MLflow UI over var/mlflow on :5000
	.venv/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/var/mlflow/mlflow.db --port 5000

benchmark: install  ## speed measurements, written to docs/benchmarks.md
	.venv/bin/python -m benchmarks.run

benchmark-ingest: install  ## ingest's peak memory and speed, in batches against whole tables, to docs/benchmarks-ingest.md
	.venv/bin/python -m benchmarks.ingest_memory

benchmark-api: install  ## API load, batch and audit measurements, written to docs/benchmarks-api.md
	.venv/bin/python -m benchmarks.api_bench

benchmark-ranking: install  ## ranking every member (demo size and 10^6) and page loads in Chromium, to docs/benchmarks-ranking.md
	.venv/bin/python -m benchmarks.ranking_pages

benchmark-advice: install  ## advice followed in the raw data: shown vs real gains, calibration under mass adoption (ranking/lever_calibration.json), to docs/ranking.md
	.venv/bin/python -m benchmarks.advice_followed

benchmark-reject-inference: install  ## reject inference against the synthetic truth, to docs/reject-inference.md
	.venv/bin/python -m benchmarks.reject_inference

benchmark-monitoring: install  ## monitoring proof on shifted synthetic data, written to docs/monitoring.md
	.venv/bin/python -m benchmarks.monitoring

benchmark-scale: install  ## DuckDB and Spark side by side at nationwide size (10^6 members), to docs/benchmarks-scale.md
	.venv/bin/python -m benchmarks.scale $(SCALE_ARGS)

fuzz: install  ## the schemathesis fuzz of the API with many more examples (COOPSCORE_FUZZ_EXAMPLES)
	COOPSCORE_FUZZ_EXAMPLES=$${COOPSCORE_FUZZ_EXAMPLES:-500} .venv/bin/pytest tests/test_api_fuzz.py --timeout=3600

clean:
	rm -rf var .venv .tools

benchmark-own-table: install  ## own-table training on public credit tables, to docs/benchmarks-own-table.md
	.venv/bin/python -m benchmarks.own_table
