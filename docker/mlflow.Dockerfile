# MLflow tracking server: Postgres backend store, artifacts proxied by the server onto a volume.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=1 \
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false

RUN pip install --no-cache-dir mlflow==3.17.2 "psycopg[binary]==3.3.9" \
    && useradd --create-home --uid 10001 mlflow \
    && mkdir -p /mlartifacts && chown mlflow:mlflow /mlartifacts
USER 10001
EXPOSE 5000

HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=10 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]
# --workers 1 and no job runners: healthy in ~15 s instead of ~35 s (measured).
CMD ["sh", "-c", "exec mlflow server --host 0.0.0.0 --port 5000 --workers 1 --backend-store-uri \"$MLFLOW_BACKEND_STORE_URI\" --artifacts-destination /mlartifacts --serve-artifacts --allowed-hosts \"$MLFLOW_ALLOWED_HOSTS\""]
