# Entry points. `make run` and `make test` each create their own virtual environment.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON    ?= python3.11
VENV      ?= .venv
TEST_VENV ?= .venv-test
PIP_FLAGS ?=
ARGS      ?=
PYTEST_ARGS ?=
# Two pytest-xdist workers (the suite waits on servers and subprocesses as much as it computes);
# tests/conftest.py groups the tests that must share a worker. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2

.PHONY: help run test lint format clean

help: ## Show the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet $(PIP_FLAGS) -e .
	touch $@

$(TEST_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TEST_VENV)/bin/python -m pip install --quiet $(PIP_FLAGS) -e '.[airflow,dev]'
	touch $@

run: $(VENV)/.installed ## Set up and run the whole pipeline on embedded defaults (SQLite, local folders)
	$(VENV)/bin/pipeline run $(ARGS)

test: $(TEST_VENV)/.installed ## Set up and run the whole test suite
	$(TEST_VENV)/bin/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

lint: $(TEST_VENV)/.installed ## ruff check and format check
	$(TEST_VENV)/bin/ruff check .
	$(TEST_VENV)/bin/ruff format --check .

format: $(TEST_VENV)/.installed ## Apply ruff fixes and formatting
	$(TEST_VENV)/bin/ruff check --fix .
	$(TEST_VENV)/bin/ruff format .

clean: ## Remove virtual environments and caches (not your pipeline home)
	rm -rf $(VENV) $(TEST_VENV) .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# ---- container images (images/, docs/images.md) ---------------------------------------------
# Names: $(IMAGE_REPO)/{pipeline,airflow,mlflow}:$(IMAGE_TAG). BASE_IMAGE empty = the
# Dockerfiles' digest-pinned python:3.11-slim-bookworm; `make images BASE_IMAGE=$(LOCAL_BASE_IMAGE)`
# builds from the debootstrap base of `make local-base` (no registry needed).
IMAGE_REPO       ?= ml-pipeline
IMAGE_TAG        ?=
BASE_IMAGE       ?=
LOCAL_BASE_IMAGE ?= ml-pipeline/local-base:bookworm
TORCH_VARIANT    ?= cpu
GIT_COMMIT       ?=
CA_BUNDLE        ?= /etc/ssl/certs/ca-certificates.crt
DOCKER           ?= /usr/bin/docker
IMAGE_ENV = IMAGE_REPO='$(IMAGE_REPO)' IMAGE_TAG='$(IMAGE_TAG)' BASE_IMAGE='$(BASE_IMAGE)' \
	TORCH_VARIANT='$(TORCH_VARIANT)' GIT_COMMIT='$(GIT_COMMIT)' CA_BUNDLE='$(CA_BUNDLE)' DOCKER='$(DOCKER)' \
	PYTHON='$(if $(wildcard $(TEST_VENV)/bin/python),$(TEST_VENV)/bin/python,$(PYTHON))' \
	$(if $(TORCH_INDEX_URL),TORCH_INDEX_URL='$(TORCH_INDEX_URL)')

.PHONY: images image-pipeline image-airflow image-mlflow local-base dockerd image-constraints

images: image-pipeline image-airflow image-mlflow ## Build the three images (BASE_IMAGE=, TORCH_VARIANT=cpu|cuda, IMAGE_TAG=)

image-pipeline: ## Build the pipeline step image (CPU; TORCH_VARIANT=cuda for CUDA)
	$(IMAGE_ENV) scripts/build-image.sh pipeline

image-airflow: ## Build the Airflow image (providers + DAGs baked in)
	$(IMAGE_ENV) scripts/build-image.sh airflow

image-mlflow: ## Build the MLflow server image
	$(IMAGE_ENV) scripts/build-image.sh mlflow

local-base: ## Build a Debian bookworm base image with debootstrap (no registry needed)
	DOCKER='$(DOCKER)' scripts/build-local-base.sh $(LOCAL_BASE_IMAGE)

dockerd: ## Start the Docker engine in the background when it is not running (no systemd)
	DOCKER='$(DOCKER)' scripts/start-dockerd.sh

image-constraints: $(TEST_VENV)/.installed ## Re-pin images/constraints.txt to the test environment's versions
	{ sed -n '1,3p' images/constraints.txt; $(TEST_VENV)/bin/python -m pip freeze --all --exclude-editable \
	  | grep -v -iE '^(torch|nvidia-[a-z0-9-]+|triton|ml-pipeline|ml_pipeline)([=<>!~ ]|$$)' | LC_ALL=C sort -f; } \
	  > images/constraints.txt.new && mv images/constraints.txt.new images/constraints.txt

# ---- local Kubernetes with kind (docs/kubernetes.md) ------------------------------------------
# None of these can run without Docker and kind; the CI workflow .github/workflows/kind-e2e.yml
# runs them on a hosted runner. Images are built with IMAGE_TAG=$(KIND_IMAGE_TAG), loaded into the
# kind node (never pulled), and deployed with charts/ml-pipeline/values-kind.yaml.
KIND           ?= kind
KUBECTL        ?= kubectl
HELM           ?= helm
KIND_CLUSTER   ?= ml-pipeline
KIND_CONFIG    ?= k8s/kind/cluster.yaml
KIND_IMAGE_TAG ?= dev
NAMESPACE      ?= ml-pipeline
RELEASE        ?= mlp
DEPLOY_VALUES  ?= charts/ml-pipeline/values-kind.yaml
HELM_ARGS      ?=
KIND_ENV = KIND='$(KIND)' KUBECTL='$(KUBECTL)' KIND_CLUSTER='$(KIND_CLUSTER)' KIND_CONFIG='$(KIND_CONFIG)' \
	NAMESPACE='$(NAMESPACE)' RELEASE='$(RELEASE)'

.PHONY: kind-up kind-up-gpu kind-load deploy port-forward e2e kind-down

kind-up: ## Create the kind cluster and namespace (CPU only; GPUs: make kind-up-gpu)
	$(KIND_ENV) scripts/kind-up

kind-up-gpu: ## Create a kind cluster with the host's NVIDIA GPUs allocatable (toolkit in the node, RuntimeClass nvidia, device plugin)
	$(KIND_ENV) HELM='$(HELM)' scripts/kind-gpu-up

kind-load: ## Build the images with IMAGE_TAG=$(KIND_IMAGE_TAG) and load them into the kind node
	$(MAKE) images IMAGE_TAG=$(KIND_IMAGE_TAG)
	for image in pipeline airflow mlflow; do \
	  $(KIND) load docker-image --name $(KIND_CLUSTER) $(IMAGE_REPO)/$$image:$(KIND_IMAGE_TAG) || exit 1; \
	done

deploy: ## helm upgrade --install the chart (DEPLOY_VALUES=, HELM_ARGS=); no --wait: Airflow waits for its migration Job
	$(HELM) upgrade --install $(RELEASE) charts/ml-pipeline --namespace $(NAMESPACE) --create-namespace \
	  --values $(DEPLOY_VALUES) $(HELM_ARGS)

port-forward: ## Forward MLflow (5000), Airflow (8080), the MinIO console (9001) and inference (5001, when enabled) to localhost
	$(KIND_ENV) scripts/port-forward

e2e: kind-up kind-load deploy ## On kind: deploy, trigger the DAG, wait for success and a registered model
	$(KIND_ENV) scripts/kind-e2e

kind-down: ## Delete the kind cluster
	$(KIND) delete cluster --name $(KIND_CLUSTER)
