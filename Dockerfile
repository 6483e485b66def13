# syntax=docker/dockerfile:1
# resilience-exporter: the image the Helm chart (helm/resilience-exporter) deploys.
#
#   docker build -t ghcr.io/resilience-exporter/resilience-exporter:0.1.0 .
#   docker run --rm -p 9864:9864 ghcr.io/resilience-exporter/resilience-exporter:0.1.0
#
# `make image` builds it with podman and no registry (a Debian bookworm base made by
# mmdebstrap, the wheels made on the host): see scripts/image.py.
#
# The base is pinned to a full Python release; pin it by digest too in your registry mirror
# (--build-arg PYTHON_IMAGE=python:3.11.11-slim-bookworm@sha256:...).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# --- build: a virtual environment with the exporter and its dependencies ------------------
FROM ${PYTHON_IMAGE} AS build
# Extra pip options: `make image` passes --no-index --find-links=<wheels mounted at build>.
ARG PIP_INSTALL_OPTIONS=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python3 -m venv /opt/resilience-exporter
# What the package runs with, exactly as uv.lock says (exported by `make lock`), hashes checked;
# then the package itself, built from the source with the locked build backend.
# psycopg[binary] ships libpq in its wheel: no compiler or libpq-dev needed.
COPY requirements/runtime.txt requirements/build.txt ./requirements/
COPY pyproject.toml README.md ./
COPY resilience_exporter ./resilience_exporter
# hadolint ignore=SC2086
RUN /opt/resilience-exporter/bin/pip install ${PIP_INSTALL_OPTIONS} --require-hashes --no-deps \
        --requirement requirements/runtime.txt \
    && /opt/resilience-exporter/bin/pip install ${PIP_INSTALL_OPTIONS} --require-hashes --no-deps \
        --target /tmp/build-backend --requirement requirements/build.txt \
    && PYTHONPATH=/tmp/build-backend /opt/resilience-exporter/bin/pip install ${PIP_INSTALL_OPTIONS} \
        --no-deps --no-build-isolation . \
    && rm -rf /tmp/build-backend \
    && /opt/resilience-exporter/bin/pip uninstall --yes pip setuptools \
    && /opt/resilience-exporter/bin/python -m compileall -q /opt/resilience-exporter

# --- runtime: the same base, the venv, a numeric non-root user ----------------------------
FROM ${PYTHON_IMAGE}
# One version source: resilience_exporter/__init__.py; `make image` passes it, the revision
# and the build time (tests/test_image.py checks the labels of the built image).
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="resilience-exporter" \
      org.opencontainers.image.description="Prometheus exporter probing connection pools, circuit breakers and hosts" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://github.com/resilience-exporter/resilience-exporter" \
      org.opencontainers.image.url="https://github.com/resilience-exporter/resilience-exporter" \
      org.opencontainers.image.documentation="https://github.com/resilience-exporter/resilience-exporter/blob/main/README.md" \
      org.opencontainers.image.vendor="resilience-exporter maintainers"
# Read-only root filesystem friendly: no bytecode written at run time, logs unbuffered.
ENV PATH=/opt/resilience-exporter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/resilience-exporter /opt/resilience-exporter
# Numeric, so that Kubernetes' runAsNonRoot can verify it; equals the chart's runAsUser.
USER 65532:65532
EXPOSE 9864
ENTRYPOINT ["resilience-exporter"]
