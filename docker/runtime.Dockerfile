# syntax=docker/dockerfile:1
# The job runtime image: `python -m airflow_ai_provider.runtime <job> --spec-json ...` with only the
# `runtime` extra (MLflow skinny, pandas, pyarrow, boto3, scikit-learn, scipy, matplotlib, Great
# Expectations). No Airflow inside. Runs as the non-root user 1000.
#
#   docker build -f docker/runtime.Dockerfile -t registry.example.com/airflow-ai-runtime:0.1.0 .
#   docker build -f docker/runtime.Dockerfile --build-arg EXTRA_PACKAGES="xgboost==2.1.1" -t ...:xgb .
#
# Where no registry or Docker engine is available, docker/build_runtime_image.sh builds the same
# image with podman from a debootstrap rootfs.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG EXTRA_PACKAGES=""
ARG UV_VERSION=0.13.9
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m pip install --quiet "uv==${UV_VERSION}"
WORKDIR /src
COPY pyproject.toml uv.lock README.md LICENSE NOTICE ./
# Versions pinned by uv.lock; only the runtime extra is installed (the project's own dependencies,
# Airflow among them, are not).
RUN uv export --frozen --no-hashes --no-dev --extra runtime --no-emit-project --no-header -o /tmp/constraints.txt \
    && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml','rb'))['project']['optional-dependencies']['runtime']))" > /tmp/requirements.txt \
    && for package in ${EXTRA_PACKAGES}; do echo "$package" >> /tmp/requirements.txt; done \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --quiet -c /tmp/constraints.txt -r /tmp/requirements.txt
COPY airflow_ai_provider ./airflow_ai_provider
RUN uv build --wheel --out-dir /tmp/dist \
    && /opt/venv/bin/pip install --quiet --no-deps /tmp/dist/*.whl \
    && /opt/venv/bin/python -c "import airflow_ai_provider.runtime.__main__" \
    && ! /opt/venv/bin/python -c "import airflow" 2>/dev/null

FROM ${PYTHON_IMAGE}
# The package version (__version__ in airflow_ai_provider/__init__.py; a unit test keeps them equal).
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="airflow-ai-provider-runtime" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --gid 1000 runtime \
    && useradd --uid 1000 --gid 1000 --home-dir /home/runtime --create-home --shell /usr/sbin/nologin runtime \
    && mkdir -p /airflow/xcom && chown 1000:1000 /airflow/xcom
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    HOME=/home/runtime \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    LANG=C.UTF-8
USER 1000:1000
WORKDIR /home/runtime
ENTRYPOINT ["python", "-m", "airflow_ai_provider.runtime"]
CMD ["--help"]
