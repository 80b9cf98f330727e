# The web process and the workers share this image (docker-compose.yml picks the command).
FROM python:3.12.8-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN useradd --create-home --uid 10001 kgc

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# collectstatic needs settings, not a database: the URL is never connected to here.
RUN DEBUG=false SECRET_KEY=collectstatic-only DATABASE_URL=postgresql://build@localhost/build \
    python manage.py collectstatic --no-input -v 0

USER kgc
EXPOSE 8000
# The web process's check; a worker container replaces it with `manage.py health --worker`
# (docker-compose.yml), which looks at that container's own worker processes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)" || exit 1
CMD ["gunicorn", "kgc.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2", "--access-logfile", "-"]
