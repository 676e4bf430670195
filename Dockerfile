# digibridge: slim image running `digibridge serve` as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY wsdl ./wsdl
COPY mappings ./mappings
COPY samples ./samples
RUN pip install --no-cache-dir build && python -m build --wheel --outdir /dist

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/digibridge --create-home digibridge
COPY --from=build /dist/*.whl /tmp/
RUN pip install --no-cache-dir /tmp/*.whl && rm /tmp/*.whl
USER digibridge
WORKDIR /var/lib/digibridge
VOLUME ["/var/lib/digibridge"]
ENV DIGIBRIDGE_STORE_URL=sqlite:////var/lib/digibridge/digibridge.db
EXPOSE 8000
CMD ["digibridge", "serve", "--host", "0.0.0.0", "--port", "8000"]
