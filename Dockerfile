# Image that runs `cron-watchdog run` as a non-root user.
#
#   docker build -t cron-watchdog .
#   docker run -d --name cron-watchdog --stop-timeout 30 \
#     -e WATCHDOG_DATABASE_URL='postgresql://postgres:PASSWORD@db.example.com:5432/postgres' \
#     -e SLACK_WEBHOOK_URL='https://hooks.slack.com/services/...' \
#     -v "$PWD/rules.toml:/etc/cron-watchdog/rules.toml:ro" \
#     -v cron-watchdog-state:/var/lib/cron-watchdog \
#     -p 127.0.0.1:9631:9631 \
#     cron-watchdog
#
# Other commands work the same way, for example `docker run --rm ... cron-watchdog validate`.
FROM python:3.11.13-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1

# Dependencies and the package go into a virtual environment that the final stage copies,
# so neither pip's caches nor the sources end up in the image. The pip step is the one CI
# runs (`pip install -e '.[test]'`) without the editable flag and the test extra.
# .dockerignore keeps the build context to these files.
COPY pyproject.toml README.md /src/
COPY watchdog /src/watchdog
RUN python -m venv /opt/cron-watchdog \
    && /opt/cron-watchdog/bin/pip install --no-cache-dir /src

FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/cron-watchdog/bin:$PATH

COPY --from=build /opt/cron-watchdog /opt/cron-watchdog

# A fixed numeric UID, so that runAsNonRoot in Kubernetes can check it.
RUN useradd --system --user-group --uid 10001 --no-create-home \
        --home-dir /var/lib/cron-watchdog --shell /usr/sbin/nologin cron-watchdog \
    && mkdir -p /var/lib/cron-watchdog /etc/cron-watchdog \
    && chown cron-watchdog:cron-watchdog /var/lib/cron-watchdog

# The rules file is mounted at /etc/cron-watchdog/rules.toml. The state file keeps the
# cursor, the alerts and the notification outbox, so it lives on a volume: without it a new
# container sends every firing alert again. /healthz and /metrics listen on all interfaces
# of the container, so that Prometheus on the container network can reach them.
ENV WATCHDOG_RULES_FILE=/etc/cron-watchdog/rules.toml \
    WATCHDOG_STATE_PATH=/var/lib/cron-watchdog/state.sqlite3 \
    WATCHDOG_HTTP_ADDR=0.0.0.0:9631
VOLUME ["/var/lib/cron-watchdog"]
EXPOSE 9631

USER 10001:10001
WORKDIR /var/lib/cron-watchdog

# The slim image has no curl. urlopen raises on the 503 that /healthz returns when the last
# cycle is stale, which fails the check. It assumes WATCHDOG_HTTP_ADDR keeps port 9631.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9631/healthz', timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["cron-watchdog"]
CMD ["run"]
