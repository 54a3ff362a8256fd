# billing-service: one image for every process of the Procfile (docker-compose.yml runs web, worker,
# beat and the release step from it). docs/deploy.md, "Containers".
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8088

# The service never runs as root; the code stays root-owned (read-only to it).
RUN groupadd --system --gid 10001 billing \
 && useradd --system --uid 10001 --gid billing --home-dir /app --no-create-home --shell /usr/sbin/nologin billing

WORKDIR /app

# Dependencies first: this layer is rebuilt only when the pins change.
COPY requirements/base.txt requirements/base.txt
RUN pip install -r requirements/base.txt

COPY . .

# Static files at build time (WhiteNoise serves them from var/static). The settings refuse to load
# without SECRET_KEY outside DEBUG: this one command gets a throwaway key, set on its own line only, so
# it is not in the image's environment and the running service must be given its own.
RUN mkdir -p var \
 && SECRET_KEY=collectstatic-only-never-used-at-runtime python manage.py collectstatic --noinput \
 && chown billing:billing var

USER billing
EXPOSE 8088
CMD ["python", "-m", "config.web"]
