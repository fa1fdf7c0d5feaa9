# Two commands on a fresh machine: `make setup` then `make test`.
# TARGET=emulator (default) sends Terraform and boto3 to the embedded emulator
# on 127.0.0.1:4566; TARGET=aws uses your AWS credentials as they are.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TARGET ?= emulator
EMULATOR_PORT ?= 4566
# Extra wheel index for torch/torchvision, e.g. https://download.pytorch.org/whl/cpu
TORCH_INDEX_URL ?=
PYTEST_ARGS ?=

export TF_CLI_CONFIG_FILE := $(CURDIR)/.state/terraform.rc
export PYTHONPATH := $(CURDIR)

ifeq ($(TARGET),emulator)
export AWS_ENDPOINT_URL := http://127.0.0.1:$(EMULATOR_PORT)
export AWS_ACCESS_KEY_ID := test
export AWS_SECRET_ACCESS_KEY := test
export AWS_REGION := us-east-1
export AWS_DEFAULT_REGION := us-east-1
export AWS_EC2_METADATA_DISABLED := true
endif

TF := terraform -chdir=terraform

.PHONY: help setup test lint typecheck fmt emulator-up emulator-down emulator-status \
	package tf-init tf-plan tf-apply tf-destroy clean

help: ## List every target with one line each
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  %-18s %s\n", $$1, $$2}'

setup: $(VENV)/.installed tf-init ## Create .venv with pinned dependencies and prepare Terraform (idempotent)

$(VENV)/.installed: requirements/dev.txt requirements/lambda.txt
	@command -v terraform >/dev/null || { echo "terraform is not on PATH (need >= 1.6)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL)) -r requirements/dev.txt
	touch $@

test: ## Run the whole pytest suite (unit + integration against the embedded emulator)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: ## ruff, mypy and terraform fmt -check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	terraform fmt -check -recursive terraform

typecheck: ## mypy only
	$(VENV)/bin/mypy

fmt: ## Format Python and Terraform in place
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .
	terraform fmt -recursive terraform

emulator-up: ## Start the embedded AWS emulator on 127.0.0.1:4566 (pid and log in .state/emulator)
	$(PY) -m local.emulator up --port $(EMULATOR_PORT)

emulator-down: ## Stop the embedded AWS emulator
	$(PY) -m local.emulator down

emulator-status: ## Say whether the emulator is running
	$(PY) -m local.emulator status --port $(EMULATOR_PORT)

package: ## Build the Lambda code zips and terraform/packages.auto.tfvars.json
	$(PY) -m ci.package_functions

tf-init: package ## Write the project-local Terraform CLI config (provider mirror if present) and init
	$(PY) -m ci.terraform_cli
	$(TF) init -input=false -no-color >/dev/null
	@echo "terraform initialised"

tf-plan: tf-init ## terraform plan against TARGET (emulator by default)
	$(TF) plan -input=false

tf-apply: tf-init ## terraform apply against TARGET (emulator by default)
	$(TF) apply -input=false -auto-approve

tf-destroy: ## terraform destroy against TARGET (emulator by default)
	$(TF) destroy -input=false -auto-approve

clean: ## Remove build outputs (keeps .venv and .state)
	rm -rf build test-output
