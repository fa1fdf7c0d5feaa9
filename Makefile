# Two commands on a fresh clone: `make up` (serve the model here) and `make test`. Both run
# the idempotent `make setup` first, which does nothing when the venvs are current.
# TARGET=emulator (default) sends Terraform and boto3 to the embedded emulator
# on 127.0.0.1:4566; TARGET=aws uses your AWS credentials as they are.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# checkov pins dependencies (boto3 among them) that clash with requirements/dev.txt,
# so it has a venv of its own. Its flags keep it offline (no platform, no update check).
CHECKOV_VENV := .venv-checkov
CHECKOV := BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=TRUE $(CHECKOV_VENV)/bin/checkov \
	-d terraform --framework terraform --skip-download --download-external-modules false
# uv installs the venvs from the same indexes pip is configured with (ci/pip_config.py) and
# is about 4x faster than pip here; INSTALLER=pip installs them with pip instead. Bytecode is
# compiled at install, as pip does: uv does not by default, and with PYTHONDONTWRITEBYTECODE
# set (as on this machine) every process would then compile torch, botocore and moto again,
# 15.8 s instead of 3.7 s to import them.
INSTALLER ?= uv
UV := $(VENV)/bin/uv
UV_VERSION := $(shell sed -n 's/^uv==//p' requirements/dev.txt)
TARGET ?= emulator
EMULATOR_PORT ?= 4566
# The local endpoint's port (`make up`, `make load`)
PORT ?= 8080
# Extra wheel index for the dev venv's torch/torchvision (make setup), e.g.
# https://download.pytorch.org/whl/cpu. lib/ on EFS uses LIB_EXTRA_INDEX_URL below instead.
TORCH_INDEX_URL ?=
# S3 bucket for Terraform state on AWS (writes terraform/backend.tf from the example)
TF_STATE_BUCKET ?=
PYTEST_ARGS ?=
# The model the pipeline builds: a model directory (docs/model-directory.md), e.g.
# MODEL=examples/tabular-sklearn, or the name of one under models/ (default: ci/pipeline.py
# DEFAULT_MODEL, digits-onnx; digits is the torch format). LIB_REQUIREMENTS overrides lib/'s
# requirement set (empty: the one model.json names, plus the directory's requirements file).
DEFAULT_MODEL := $(shell sed -n 's/^DEFAULT_MODEL = "\(.*\)"/\1/p' ci/pipeline.py)
MODEL ?= $(DEFAULT_MODEL)
LIB_REQUIREMENTS ?=
# Extra wheel index for lib/. On AWS it is PyTorch's CPU index: from PyPI alone torch is
# the CUDA build with gigabytes of nvidia-* wheels that a Lambda cannot use. Here the
# machine's pip configuration already finds the CPU build (a local wheel).
ifeq ($(TARGET),aws)
LIB_EXTRA_INDEX_URL ?= https://download.pytorch.org/whl/cpu
else
LIB_EXTRA_INDEX_URL ?=
endif
KEEP ?= 3
PIPELINE_ARGS ?=
# Arguments of `make bench`, e.g. BENCH_ARGS='--models digits --repeats 5' (python -m bench --help)
BENCH_ARGS ?=
# Arguments of `make bench-syncer`, e.g. BENCH_SYNCER_ARGS='--files 20000 --json'
BENCH_SYNCER_ARGS ?=
# Arguments of `make load`, e.g. LOAD_ARGS='--clients 10 --seconds 20 --json' (python -m load --help)
LOAD_ARGS ?=
# Arguments of `make cost`, e.g. ARGS='--requests-per-day 5000 --json' (python -m cost --help)
ARGS ?=

export TF_CLI_CONFIG_FILE := $(CURDIR)/.state/terraform.rc
export PYTHONPATH := $(CURDIR)

ifeq ($(TARGET),emulator)
export AWS_ENDPOINT_URL := http://127.0.0.1:$(EMULATOR_PORT)
export AWS_ACCESS_KEY_ID := test
export AWS_SECRET_ACCESS_KEY := test
export AWS_REGION := us-east-1
export AWS_DEFAULT_REGION := us-east-1
export AWS_EC2_METADATA_DISABLED := true
# The emulator's resources live only as long as the emulator, and so does their state.
export TF_STATE_FILE := $(CURDIR)/.state/emulator/terraform.tfstate
TF_STATE_ARGS := -state=$(TF_STATE_FILE)
# The local data plane runs functions on this machine's Python, so the emulated
# functions declare it as their runtime (lib/ is then built for it). local_emulator lets
# Terraform accept python3.11, which it refuses for AWS (Amazon Linux 2's glibc).
LOCAL_PYTHON := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
TF_STATE_ARGS += -var lambda_runtime=python$(LOCAL_PYTHON) -var local_emulator=true
TF_STATE_ARGS += -var 'extra_cors_origins=["http://127.0.0.1:$(PORT)"]'

endif

TF := terraform -chdir=terraform
# Inside the data dir, so deleting terraform/.terraform also forgets the init.
TF_INIT_STAMP := terraform/.terraform/.initialised
TF_INIT_INPUTS = terraform/*.tf $(wildcard terraform/modules/*/*.tf) $(wildcard terraform/.terraform.lock.hcl) .state/terraform.rc

.PHONY: help setup test lint typecheck fmt emulator-up emulator-down emulator-status \
	package tf-init tf-plan tf-apply tf-destroy tf-outputs clean pipeline rollback build-lib \
	build-model release publish promote smoke prune up down deploy destroy emulator-if-local \
	cost cost-plot bench \
	bench-syncer \
	load

help: ## List every target with one line each
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  %-18s %s\n", $$1, $$2}'

setup: $(VENV)/.installed $(CHECKOV_VENV)/.installed tf-init ## Create .venv and .venv-checkov with pinned dependencies and prepare Terraform (idempotent)

$(VENV)/.installed: requirements/dev.txt
	@command -v terraform >/dev/null || { echo "terraform is not on PATH (need >= 1.9)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
ifeq ($(INSTALLER),uv)
	test -x $(UV) || $(PY) -m pip install --quiet uv==$(UV_VERSION)
	$(UV) pip install --quiet --compile-bytecode --python $(PY) \
		$(shell $(PYTHON) -m ci.pip_config $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL))) \
		-r requirements/dev.txt
else
	$(PY) -m pip install --quiet $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL)) -r requirements/dev.txt
endif
	@# The browser tests use Debian's Chromium (Playwright's own download does not work offline).
	@test -x /usr/bin/chromium || { if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; \
	else echo "browser tests need Chromium: sudo apt-get install chromium fonts-dejavu-core"; fi; }
	touch $@

$(CHECKOV_VENV)/.installed: requirements/checkov.txt $(VENV)/.installed
ifeq ($(INSTALLER),uv)
	test -x $(CHECKOV_VENV)/bin/python || $(UV) venv --quiet --python $(PYTHON) $(CHECKOV_VENV)
	$(UV) pip install --quiet --compile-bytecode --python $(CHECKOV_VENV)/bin/python \
		$(shell $(PYTHON) -m ci.pip_config) \
		-r requirements/checkov.txt
else
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements/checkov.txt
endif
	touch $@

test: setup ## Setup if needed, then the whole pytest suite (unit + integration against the embedded emulator)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: ## ruff, mypy, terraform fmt -check and checkov on terraform/
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	terraform fmt -check -recursive terraform
	$(CHECKOV) --quiet --compact

typecheck: ## mypy only
	$(VENV)/bin/mypy

fmt: ## Format Python and Terraform in place
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .
	terraform fmt -recursive terraform

emulator-up: ## Start the embedded AWS emulator on 127.0.0.1:4566 (pid and log in .state/emulator)
	$(PY) -m local.emulator up --port $(EMULATOR_PORT)

emulator-down: ## Stop the embedded AWS emulator (its Terraform state and EFS folder go with it)
	$(PY) -m local.emulator down
	rm -f .state/emulator/terraform.tfstate .state/emulator/terraform.tfstate.backup .state/emulator/applied.json
	rm -rf .state/efs .state/code

emulator-status: ## Say whether the emulator is running
	$(PY) -m local.emulator status --port $(EMULATOR_PORT)

package: ## Build the Lambda code zips and terraform/packages.auto.tfvars.json
	$(PY) -m ci.package_functions

tf-init: package ## Write the project-local Terraform CLI config (provider mirror if present) and init
	$(PY) -m ci.terraform_cli
ifneq ($(TF_STATE_BUCKET),)
	sed 's/REPLACE-with-your-state-bucket/$(TF_STATE_BUCKET)/' terraform/backend.tf.example > terraform/backend.tf
endif
	@# init again only when what it reads changed (1.5 s saved on every make up/test/pipeline)
	@if [ -f $(TF_INIT_STAMP) ] && [ -z "$$(find $(TF_INIT_INPUTS) -newer $(TF_INIT_STAMP) 2>/dev/null)" ]; then \
		echo "terraform initialised (nothing it reads changed since)"; \
	else \
		echo "$(TF) init -input=false -no-color"; \
		$(TF) init -input=false -no-color >/dev/null && touch $(TF_INIT_STAMP) && echo "terraform initialised"; \
	fi

tf-plan: tf-init ## terraform plan against TARGET (emulator by default)
	$(TF) plan -input=false $(TF_STATE_ARGS) $(TF_EXTRA_VARS)

tf-apply: tf-init ## terraform apply against TARGET (emulator by default)
	$(TF) apply -input=false -auto-approve $(TF_STATE_ARGS) $(TF_EXTRA_VARS)

tf-destroy: ## terraform destroy against TARGET (emulator by default)
	$(TF) destroy -input=false -auto-approve $(TF_STATE_ARGS) $(TF_EXTRA_VARS)

tf-outputs: ## Save Terraform's outputs to build/tf-outputs.json for the deploy steps
	$(PY) -m ci.stack

# What the pipeline builds, for `make pipeline` and `make up`.
PIPELINE_FLAGS = --model $(MODEL) \
	$(if $(LIB_REQUIREMENTS),--lib-requirements $(LIB_REQUIREMENTS)) --keep $(KEEP) \
	$(if $(LIB_EXTRA_INDEX_URL),--extra-index-url $(LIB_EXTRA_INDEX_URL))

pipeline: export UP_TF_ARGS = $(TF_STATE_ARGS) $(TF_EXTRA_VARS)
pipeline: setup ## Run pipeline steps 1-8 (build, package, publish, promote, smoke, prune) against TARGET
ifeq ($(TARGET),emulator)
	@$(PY) -m local.up --until terraform --emulator-port $(EMULATOR_PORT)
else
	$(MAKE) --no-print-directory tf-apply
endif
	$(PY) -m ci.pipeline $(PIPELINE_FLAGS) $(PIPELINE_ARGS)

deploy: ## Deploy to TARGET (aws: your credentials): terraform apply, then the pipeline with its smoke test; MODEL=path/to/model-dir
ifeq ($(TARGET),emulator)
	$(MAKE) --no-print-directory up
else
	$(MAKE) --no-print-directory pipeline
endif

destroy: tf-init ## Remove everything Terraform created on TARGET (the S3 buckets are emptied with it; EFS goes too)
ifeq ($(TARGET),emulator)
	$(MAKE) --no-print-directory down
else
	$(TF) destroy -input=false -auto-approve $(TF_STATE_ARGS) $(TF_EXTRA_VARS)
	rm -f build/tf-outputs.json build/last-deploy.json
endif

rollback: ## Return the live alias to the previous release in one step
	$(PY) -m ci.promote --rollback

build-lib: ## Step 2: build lib/ (the Lambda's dependencies) into build/lib
	$(PY) -m ci.build_lib --out build/lib \
		$(if $(LIB_REQUIREMENTS),--requirements $(LIB_REQUIREMENTS),--model $(MODEL)) \
		$(if $(LIB_EXTRA_INDEX_URL),--extra-index-url $(LIB_EXTRA_INDEX_URL))

build-model: ## Step 3: validate and build the model directory MODEL (a path, or a name in models/) into build/model
	$(PY) -m ci.model_dir --model $(MODEL) --out build/model

release: ## Step 4: package build/lib + build/model into a release bundle in build/release
	$(PY) -m ci.package_release --lib build/lib --model build/model --out build/release

publish: ## Step 5: upload the bundle and have the syncer publish it on EFS
	$(PY) -m ci.publish --release build/release/release.json

promote: ## Step 6: point the live alias at the published release
	$(PY) -m ci.promote --release build/release/release.json

smoke: ## Step 7: warm up and predict a known digit through the endpoint; roll back on failure
	$(PY) -m ci.smoke

prune: ## Step 8: delete releases beyond the newest KEEP (never live or previous)
	$(PY) -m ci.prune --keep $(KEEP)

# `make up` hands Terraform's arguments to local.up through the environment (they hold quotes).
up: export UP_TF_ARGS = $(TF_STATE_ARGS) $(TF_EXTRA_VARS)
up: setup ## Setup if needed, then emulator, Terraform, pipeline (skipped if current) and the endpoint on http://127.0.0.1:$(PORT)
ifneq ($(TARGET),emulator)
	@echo "make up serves the stack on this machine (TARGET=emulator); on AWS: make tf-apply pipeline TARGET=aws"; exit 1
endif
	@$(PY) -m local.up --port $(PORT) --emulator-port $(EMULATOR_PORT) $(PIPELINE_FLAGS)

down: ## Stop the local endpoint and the emulator that `make up` started
	$(PY) -m local.dataplane down
	$(MAKE) --no-print-directory emulator-down

cost: ## Monthly cost, always-on alternatives and break-even traffic (ARGS='--requests-per-day N --json …')
	$(PY) -m cost $(ARGS)

cost-plot: ## Draw docs/cost.png: monthly cost against requests/day, warm and cold, vs always-on
	$(PY) -m cost.plot --out docs/cost.png

bench: ## Benchmark this handler against the naive one (cold, warm, throughput, RSS) -> bench/results/
	$(PY) -m bench $(if $(LIB_REQUIREMENTS),--lib-requirements $(LIB_REQUIREMENTS)) \
		$(if $(LIB_EXTRA_INDEX_URL),--extra-index-url $(LIB_EXTRA_INDEX_URL)) $(BENCH_ARGS)

bench-syncer: ## Count the syncer's file-system operations for a 10,000-file lib/ and price them at EFS latencies
	$(PY) -m bench.syncer_ops $(BENCH_SYNCER_ARGS)

load: ## Load-test the `make up` endpoint: served, 429s, p50/p95/p99, environments, RSS growth (LOAD_ARGS)
	$(PY) -m load --url http://127.0.0.1:$(PORT) --clients 50 --seconds 60 $(LOAD_ARGS)

emulator-if-local:
ifeq ($(TARGET),emulator)
	@$(PY) -m local.emulator up --port $(EMULATOR_PORT) >/dev/null
endif

clean: ## Remove build outputs (keeps .venv and .state)
	rm -rf build test-output
