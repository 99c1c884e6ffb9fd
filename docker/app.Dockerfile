# The clearsight application image: the locked environment, the library, the flows and the
# service code. One image, three roles in the compose stack: the Prefect worker (process work
# pool), the one-shot bootstrap retrain, and the BentoML service.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    CLEARSIGHT_HOME=/app \
    DO_NOT_TRACK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    MLFLOW_DISABLE_TELEMETRY=true \
    BENTOML_DO_NOT_TRACK=true \
    GX_ANALYTICS_ENABLED=false

RUN pip install --no-cache-dir uv==0.13.9 \
    && useradd --create-home --uid 10001 clearsight

WORKDIR /app
# Dependencies first (cached layer), then the project itself.
COPY pyproject.toml uv.lock .python-version README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-project --extra tensorflow
# The wheel holds the library and both adapters (flows, serving) and the data contract.
COPY src ./src
COPY flows ./flows
COPY serving ./serving
COPY data/contract ./data/contract
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --extra tensorflow
COPY prefect.yaml ./
COPY docker/entrypoints ./docker/entrypoints

# Runtime state (holdout, reports, incoming data) lives on a volume at /var/lib/clearsight, not
# over /app/data: that keeps the committed data contract out of the volume's copy-up.
RUN mkdir -p /var/lib/clearsight /app/mlflow /home/clearsight/bentoml \
    && chown -R clearsight:clearsight /var/lib/clearsight /app/mlflow /home/clearsight
USER 10001
ENV BENTOML_HOME=/home/clearsight/bentoml \
    CLEARSIGHT_DATA_DIR=/var/lib/clearsight

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=5 \
    CMD ["python", "-c", "import clearsight"]
CMD ["clearsight", "--help"]
