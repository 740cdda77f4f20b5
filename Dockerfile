# syntax=docker/dockerfile:1
# stream-infer image: one image, every role (`stream-infer worker | labels | serve | lag serve |
# topics apply`), chosen by the command.
#
#   docker build -t stream-infer .                    # runtime (CPU; CUDA: see Dockerfile.cuda)
#   docker build -t stream-infer-train --target trainer .   # + the training extras
#
# Stages: `builder` builds the wheel and installs it with its runtime dependencies into a
# virtualenv; `runtime` copies only that virtualenv onto a fresh slim base (no compiler, no
# pip cache, no training extras) and runs as an unprivileged user; `trainer` adds the `train`
# extra (scikit-learn, skl2onnx, onnx) for `stream-infer train`.
#
# CUDA: onnxruntime-gpu (the Linux dependency) already holds the CUDA execution provider; it
# needs the CUDA 12 and cuDNN 9 runtime libraries, which Dockerfile.cuda takes from NVIDIA's
# runtime image. model.device=auto uses CUDA when a GPU is visible, else the CPU.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md ./
COPY stream_infer ./stream_infer
COPY loadgen ./loadgen
COPY bench ./bench
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && pip install --no-cache-dir /wheels/stream_infer-*.whl

FROM python:${PYTHON_VERSION}-slim AS base
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app
WORKDIR /app
COPY topics ./topics
COPY features ./features
RUN mkdir -p /app/var /registry && chown -R app:app /app/var /app/features /registry
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STREAM_INFER_TOPICS__SPECS_DIR=/app/topics \
    STREAM_INFER_FEATURES__REPO_DIR=/app/features \
    STREAM_INFER_FEATURES__STATE_DIR=/app/var/state \
    STREAM_INFER_MODEL__REGISTRY_DIR=/registry
# 8080 sidecar HTTP, 9108 worker /metrics, 9109 label processor /metrics, 9110 lag exporter.
EXPOSE 8080 9108 9109 9110
# The worker's readiness (stream_infer_ready on its /metrics: the model is warm, it consumes,
# its store answers). docker-compose.yml and deploy/k8s set each role's own probe.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-m", "stream_infer.healthcheck", "http://127.0.0.1:9108/metrics", \
         "--gauge", "stream_infer_ready"]
ENTRYPOINT ["stream-infer"]
CMD ["worker"]

FROM base AS trainer
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir "$(ls /wheels/stream_infer-*.whl)[train]" && rm -rf /wheels
USER 10001:10001

FROM base AS runtime
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
