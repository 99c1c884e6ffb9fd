# Prefect server (API + UI) on the Postgres backend.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    DO_NOT_TRACK=1 \
    PREFECT_HOME=/home/prefect/.prefect

RUN pip install --no-cache-dir prefect==3.9.1 \
    && useradd --create-home --uid 10001 prefect
USER 10001
EXPOSE 4200

HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=10 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:4200/api/health', timeout=4)"]
CMD ["prefect", "server", "start", "--host", "0.0.0.0", "--port", "4200"]
