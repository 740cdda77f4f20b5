FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stream_infer ./stream_infer
COPY loadgen ./loadgen
COPY bench ./bench
COPY topics ./topics
COPY features ./features
RUN pip install --no-cache-dir '.[train]'
ENV STREAM_INFER_TOPICS__SPECS_DIR=/app/topics STREAM_INFER_FEATURES__REPO_DIR=/app/features
