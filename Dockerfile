# One image for every Alur process: `alur run <service|gateway-sim|smtp-sink>`.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY alur alur
COPY schemas schemas
COPY services services
COPY deploy deploy
RUN pip install --no-cache-dir . && useradd --system --uid 10001 alur
USER alur
ENV ALUR_LISTEN_HOST=0.0.0.0 ALUR_STATE_DIR=/tmp/alur
ENTRYPOINT ["alur"]
