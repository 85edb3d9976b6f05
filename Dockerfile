# betasweep image: workers, study creation, the MLflow server and optuna-dashboard (one image, so the
# MLflow and Optuna versions of clients and servers always match). Every Python package is pinned
# (docker/requirements.txt; torch and torchvision by the build arguments below).
#
#   docker build -t betasweep:cpu .                                        # CPU torch (default)
#   docker build --build-arg TORCH_VARIANT=cu126 -t betasweep:cu126 .      # CUDA torch
#
# TORCH_VARIANT is a wheel index under https://download.pytorch.org/whl/ (cpu, cu126, cu128, ...);
# a CUDA image needs the NVIDIA container toolkit on the host (see docker/compose.gpu.yml).
# BASE_IMAGE: any Debian bookworm image with python3 (3.11) and its venv module; the tests build one
# with debootstrap (tests/docker_stack.py).
ARG BASE_IMAGE=python:3.11.14-slim-bookworm
FROM ${BASE_IMAGE}

ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
# WHEELHOUSE: a folder or URL of wheels (pip --find-links) holding every pinned package; the build then
# uses no package index at all (an offline build; the tests serve one on 127.0.0.1).
ARG WHEELHOUSE=
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

RUN python3 -m venv /opt/venv
COPY docker/requirements.txt /opt/betasweep/requirements.txt
# Dependencies first, in layers of their own, so that a source change rebuilds only the last layers.
# torch first, from the variant's index, so that the pinned packages keep it (and torchvision matches it)
# instead of pulling the registry's default CUDA build.
RUN set -eu; \
    if [ -n "$WHEELHOUSE" ]; then from="--no-index --find-links $WHEELHOUSE"; \
    else from="--index-url https://download.pytorch.org/whl/${TORCH_VARIANT} --extra-index-url https://pypi.org/simple"; fi; \
    pip install $from -c /opt/betasweep/requirements.txt "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"
RUN set -eu; \
    if [ -n "$WHEELHOUSE" ]; then from="--no-index --find-links $WHEELHOUSE"; else from=""; fi; \
    pip install $from -r /opt/betasweep/requirements.txt

WORKDIR /opt/betasweep
COPY pyproject.toml README.md ./
COPY src ./src
COPY docker/healthcheck.py docker/mlflow-auth.ini /opt/betasweep/docker/
# setuptools is pinned in requirements.txt, so the project builds offline, without build isolation.
RUN pip install --no-deps --no-build-isolation . \
    && python -c "import torch, betasweep, psycopg, optuna_dashboard, mlflow; print('torch', torch.__version__)" \
    && pip check

RUN useradd --create-home --uid 10001 --user-group betasweep \
    && mkdir -p /data /examples /mlflow && chown betasweep:betasweep /data /examples /mlflow
USER betasweep
WORKDIR /home/betasweep
ENV MPLCONFIGDIR=/home/betasweep/.cache/matplotlib \
    MLFLOW_AUTH_CONFIG_PATH=/opt/betasweep/docker/mlflow-auth.ini

CMD ["betasweep", "--help"]
