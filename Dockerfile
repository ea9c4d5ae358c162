# The worker image used by docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY tasks ./tasks
COPY schemas ./schemas
COPY client ./client
RUN pip install --no-cache-dir . && useradd --system --uid 10001 account-reset
USER account-reset

EXPOSE 9808
CMD ["account-reset", "worker"]
