# PixelCNN service: CPU-only image with the shipped weights baked in.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv

# The CPU build of torch from PyTorch's CPU index: PyPI's default Linux wheel pulls several GB
# of CUDA libraries this service never uses. Installed first, so code changes keep this layer.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "${TORCH_INDEX}" torch==2.13.0

COPY pyproject.toml README.md ./
COPY model ./model
COPY app ./app
COPY bench ./bench
# --build-arg EXTRAS='[scale]' adds Ray Serve: the image deploy/rayservice.yaml runs.
ARG EXTRAS=""
RUN pip install "./${EXTRAS}"
COPY weights ./weights

# The jobs' database lives in /srv/state, a volume in docker-compose.yml, writable by the user.
RUN useradd --create-home --uid 10001 pixelcnn \
    && mkdir /srv/state && chown 10001 /srv/state
USER 10001
VOLUME /srv/state

# numba keeps the sampler's compiled loops in the state volume too, so only the first start
# compiles them (about 40 s on a 2-core CPU; the health check's start period allows for it).
ENV PIXELCNN_WEIGHTS=/srv/weights/pixelcnn-gated-fmnist.safetensors \
    PIXELCNN_CLASSIFIER=/srv/weights/fmnist-classifier.safetensors \
    PIXELCNN_JOB_STORE=sqlite:////srv/state/jobs.sqlite3 \
    NUMBA_CACHE_DIR=/srv/state/numba
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
# Inside the container the service listens on every interface, to be reachable through a
# published port, so it starts only with API keys (PIXELCNN_API_KEYS_FILE, a mounted file) or
# with --allow-anonymous, which docker-compose.yml passes as it publishes on loopback only.
CMD ["python", "-m", "app", "--host", "0.0.0.0", "--port", "8000"]
