# syntax=docker/dockerfile:1
# One image for the four services; each Deployment picks its module: `<image> services.keys serve`,
# `<image> shared.migrate keys`, `<image> services.keys reencrypt`. Only the runtime dependencies pinned in
# pyproject.toml ([project].dependencies, never the dev extra) are installed, their transitive dependencies held
# by deploy/tools/image-constraints.txt (deploy/tools/lock-image-deps.sh); the code runs from /app as in
# development, so every template, static file and migration ships exactly as it is in the repository.

FROM python:3.11-slim-bookworm AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
COPY pyproject.toml deploy/tools/image-constraints.txt /src/
RUN python -m venv /opt/venv \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" > /src/requirements.txt \
 && /opt/venv/bin/pip install --only-binary=:all: -r /src/requirements.txt -c /src/image-constraints.txt

FROM python:3.11-slim-bookworm
# tini is PID 1: it forwards SIGTERM to python and reaps zombies.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 keyward \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin keyward
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
COPY --chown=root:root shared /app/shared
COPY --chown=root:root services /app/services
# Compiled once here: the root file system is read-only at run time and nothing is written beside the code.
RUN /opt/venv/bin/python -m compileall -q /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    HTTP_HOST=0.0.0.0 \
    KEYWARD_ENV=prod \
    LOG_FORMAT=json
USER 10001:10001
EXPOSE 8080 8081 8082 8083
ENTRYPOINT ["/usr/bin/tini", "--", "python", "-m"]
CMD ["services.gateway", "serve"]
