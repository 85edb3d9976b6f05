# syntax=docker/dockerfile:1
# betasweep image: workers, study creation, the MLflow server and optuna-dashboard (one image, so the
# MLflow and Optuna versions of clients and servers always match).
#
#   docker build -t betasweep:cpu .                                        # CPU torch (default)
#   docker build --build-arg TORCH_VARIANT=cu126 -t betasweep:cu126 .      # CUDA torch
#
# TORCH_VARIANT is a wheel index under https://download.pytorch.org/whl/ (cpu, cu126, cu128, ...);
# a CUDA image needs the NVIDIA container toolkit on the host (see docker/compose.gpu.yml).
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim-bookworm

ARG TORCH_VARIANT=cpu
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, from the variant's index, so that installing the package keeps it (and torchvision
# matches it) instead of pulling the registry's default CUDA build.
RUN pip install --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" torch torchvision

WORKDIR /opt/betasweep
COPY pyproject.toml README.md ./
COPY src ./src
# postgres extra: psycopg 3 for postgresql+psycopg:// URLs; boto3: the MLflow server's S3 (MinIO)
# artifact store; optuna-dashboard: the dashboard service.
RUN pip install ".[postgres]" boto3 optuna-dashboard \
    && python -c "import torch, betasweep, psycopg, boto3, optuna_dashboard; print('torch', torch.__version__)"

RUN useradd --create-home --uid 10001 --user-group betasweep \
    && mkdir -p /data /examples && chown betasweep:betasweep /data /examples
USER betasweep
WORKDIR /home/betasweep
ENV MPLCONFIGDIR=/home/betasweep/.cache/matplotlib

CMD ["betasweep", "--help"]
