# One image for every Alur process: `alur run <service|gateway-sim|smtp-sink>`.
FROM python:3.11-slim
WORKDIR /app
# The locked runtime dependencies first (their layer is kept while only the code changes),
# each checked against its hash; then the project, adding nothing to them.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY alur alur
COPY schemas schemas
COPY services services
COPY deploy deploy
RUN pip install --no-cache-dir --no-deps . && useradd --system --uid 10001 alur
USER alur
ENV ALUR_LISTEN_HOST=0.0.0.0 ALUR_STATE_DIR=/tmp/alur
ENTRYPOINT ["alur"]
