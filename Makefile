# deepvs30: one command to reproduce, one to test. `make help` lists the rest.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export PATH := $(BIN):$(PATH)
# Real records for the tests and the real evaluation set (never copied into the repo).
export DEEPVS30_REALDATA ?= $(abspath $(CURDIR)/../shared/realdata)
WORKERS ?= 1
PYTEST_ARGS ?=

.PHONY: help venv data reproduce test tune ui dashboard promote bench lint clean real-benchmark real-model report-screenshots ui-screenshots

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -c requirements.lock -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP) ## create .venv from pyproject.toml + requirements.lock (torch 2.13.0 CPU)

data: $(STAMP) ## fetch the pinned dataset (dvc pull), or generate the default synthetic corpus
	@if [ ! -f data/metadata.csv ]; then \
	  dvc pull -q data.dvc 2>/dev/null || { \
	    echo "data/ not in the DVC remote: generating the default synthetic corpus (params.yaml: synth)"; \
	    deepvs30 synth --out data; }; \
	fi
	@# dvc status says "not in cache", never "modified", when data.dvc's hash is not in the cache
	@# (a fresh clone that regenerated data/); dvc data status compares the hashes themselves
	@dvc data status --json data 2>/dev/null | python -c 'import json, sys; s = json.loads(sys.stdin.read() or "{}"); sys.exit("data/" not in s.get("uncommitted", {}).get("modified", []))' \
	  && echo "note: data/ differs from data.dvc (regenerated on another platform or your own data)" || true

reproduce: data ## run the DVC pipeline on the default dataset (validate, prepare, train, evaluate, register)
	dvc repro register
	@echo
	@echo "Results: metrics.json (dvc metrics show), plots in reports/plots/, validation report in reports/validation/"
	@echo "MLflow: make ui  (tracking store mlflow.db, artifacts in mlruns/)"

real-benchmark: data ## station-disjoint benchmark on the real records ($$DEEPVS30_REALDATA) -> reports/real/
	dvc repro real_benchmark
	@echo "Results: reports/real/metrics.json, summary.csv, breakdown.csv, plots in reports/real/"

real-model: data ## train the best real-benchmark arm on every labelled real station; register deepvs30-real
	dvc repro real_model
	@echo "Use it: deepvs30 predict --model models:/deepvs30-real@champion PATHS"

test: $(STAMP) ## run the test suite (real-data tests read DEEPVS30_REALDATA, default ../shared/realdata)
	pytest $(PYTEST_ARGS)

tune: data ## Optuna search (params.yaml: tune); WORKERS=n local workers on one storage
	dvc repro prepare
	deepvs30 tune --workers $(WORKERS)

ui: $(STAMP) ## MLflow UI on http://127.0.0.1:5000
	mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///mlflow.db --default-artifact-root ./mlruns

DASHBOARD_PORT ?= 8080
# The study storage deepvs30 tune uses: $TUNE_STORAGE, else params.yaml tune.storage.
STUDY_STORAGE = $(shell $(BIN)/python -m deepvs30.dashboard)
dashboard: $(STAMP) ## Optuna dashboard of the tuning study on http://127.0.0.1:8080 (params.yaml: tune.storage)
	optuna-dashboard --host 127.0.0.1 --port $(DASHBOARD_PORT) "$(STUDY_STORAGE)"

promote: $(STAMP) ## move the champion alias if the challenger is better (params.yaml: promote)
	deepvs30 promote

bench: $(STAMP) ## speed, memory and scaling benchmarks -> bench/results.json
	deepvs30 bench $(if $(QUICK),--quick,)

# The README's report screenshots: `deepvs30 predict --report` on two K-NET event archives of the
# real records (42 stations), photographed by headless Chromium (bash .ci/chromium-setup.sh).
SHOT_MODEL ?= models:/deepvs30-real@champion
SHOT_RECORDS ?= $(DEEPVS30_REALDATA)/knet_kiknet_dscp_sevov/20250330101800.knt.tar.gz \
  $(DEEPVS30_REALDATA)/knet_kiknet_dscp_sevov/20250328035000.knt.tar.gz
SHOT_REPORT ?= reports/predict_report
report-screenshots: $(STAMP) ## docs/img/report-{index,station}.png from a predict report (SHOT_MODEL=..., SHOT_RECORDS=...)
	deepvs30 predict --model $(SHOT_MODEL) $(SHOT_RECORDS) --out $(SHOT_REPORT).csv --report $(SHOT_REPORT)
	python -m deepvs30.report --screenshot $(SHOT_REPORT) --out docs/img $(if $(SHOT_STATION),--station-page station-$(SHOT_STATION).html,)

# The README's MLflow model card and Optuna dashboard screenshots: mlflow ui over mlflow.db (the
# latest version of mlflow.registered_model) and optuna-dashboard over the study storage of
# `make dashboard`, photographed by headless Chromium. UI_SHOT_ARGS="--storage URL --study NAME
# --model NAME --version N --only model-card|dashboard" points them elsewhere.
UI_SHOT_ARGS ?=
ui-screenshots: $(STAMP) ## docs/img/model-card.png, docs/img/dashboard-*.png (after reproduce and tune)
	python -m deepvs30.screenshots --out docs/img $(UI_SHOT_ARGS)

lint: $(STAMP) ## ruff
	ruff check src tests
	ruff format --check src tests

clean: ## remove prepared artefacts, models and reports (keeps data/, mlflow.db and .venv)
	rm -rf prepared models reports metrics.json prepared_real

EXP_ARGS = $(if $(QUICK),--quick,) $(if $(SEEDS),--seeds $(SEEDS),)
# each experiment is a dvc.yaml stage (exp_NAME); QUICK=1 or SEEDS=n run a variant outside DVC
exp_run = $(if $(strip $(EXP_ARGS)),deepvs30 experiment $(1) $(EXP_ARGS),dvc repro exp_$(1))
.PHONY: headline
headline: $(STAMP) ## the README's headline table: the pipeline's model over 3 training seeds -> headline.json (after reproduce)
	$(call exp_run,headline)
.PHONY: exp-rivals exp-transfer-curve exp-cross-cluster exp-synth-to-real exp-ps-ablation
exp-rivals: $(STAMP) ## the pipeline's model beside the cnn, lstm, transformer rivals and without P/S (after reproduce)
	$(call exp_run,rivals)
exp-transfer-curve: $(STAMP) ## transfer experiment: target-only vs pre-train+fine-tune as target stations shrink
	$(call exp_run,transfer_curve)
exp-cross-cluster: $(STAMP) ## transfer experiment: pre-train on other clusters, fine-tune on a held-out one
	$(call exp_run,cross_cluster)
exp-synth-to-real: $(STAMP) ## transfer experiment: synthetic pre-training, zero-shot and fine-tuned on real records
	$(call exp_run,synth_to_real)
exp-ps-ablation: $(STAMP) ## transfer experiment: with and without the P/S channel, scratch vs pretext pre-training
	$(call exp_run,ps_ablation)
