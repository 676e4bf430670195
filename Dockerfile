# digibridge: a slim image running `digibridge serve` as a non-root user (docs/deploy.md).
#
#   docker build -t digibridge .                                    # SQLite, embedded defaults
#   docker build --build-arg DIGIBRIDGE_EXTRAS=otel -t digibridge . # with OpenTelemetry export
#
# Configuration comes from DIGIBRIDGE_* variables (or a file named by DIGIBRIDGE_CONFIG);
# secrets from DIGIBRIDGE_<KEY>_FILE pointing at mounted secret files.

FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir "build==1.*"
COPY pyproject.toml README.md ./
COPY src ./src
COPY wsdl ./wsdl
COPY mappings ./mappings
COPY samples ./samples
RUN python -m build --wheel --outdir /dist

FROM python:3.11-slim
ARG DIGIBRIDGE_EXTRAS=""
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --system --uid 10001 --home-dir /var/lib/digibridge --create-home digibridge
COPY --from=build /dist/*.whl /tmp/
RUN pip install "$(ls /tmp/digibridge-*.whl)${DIGIBRIDGE_EXTRAS:+[$DIGIBRIDGE_EXTRAS]}" \
    && rm /tmp/*.whl
USER 10001
WORKDIR /var/lib/digibridge
VOLUME ["/var/lib/digibridge"]
ENV DIGIBRIDGE_STORE_URL=sqlite:////var/lib/digibridge/digibridge.db \
    DIGIBRIDGE_LOG_FORMAT=json
EXPOSE 8000
# No curl in the slim image: the standard library asks /healthz (liveness: the process answers).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]
# SIGTERM drains (readyz 503, requests and deliveries in flight finished) and exits 0; give the
# container more than DIGIBRIDGE_SHUTDOWN_TIMEOUT (10 s) to stop: `docker stop -t 30`.
STOPSIGNAL SIGTERM
CMD ["digibridge", "serve", "--host", "0.0.0.0", "--port", "8000"]
