"""What the GPU machine's image holds: the one home of that fact for the GPU check's tools.

``make gpu-wheels`` carries what is missing from it, ``make gpu-rehearsal`` rebuilds it on a CPU
machine (a virtual environment of these packages alone), and the check itself compares the real
machine against it. Read from the lent machine's package list of 2026-11-17 (names) and its
``pip list`` (the versions given below); a version not given is the newest the index serves.
"""
from __future__ import annotations

import re

PYTHON = "3.12"
#: the CUDA build the image's torch is (bitsandbytes keeps this kernel library, ``--cuda``)
CUDA = "130"

#: every Python distribution the image has (normalized names)
PACKAGES = frozenset("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn
einops equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec
gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio
iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib
kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13
nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir
onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker
prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyre-extensions
pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core
scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools
shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch
torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt
xarray xxhash yarl zipp
""".split())

#: the versions read off the machine (the rest: unknown, so the rehearsal takes the newest)
VERSIONS = {
    "torch": "2.11.0", "torchvision": "0.26.0", "triton": "3.6.0", "numpy": "2.5.2",
    "transformers": "5.17.0", "huggingface-hub": "1.33.0", "tokenizers": "0.23.2",
    "safetensors": "0.8.0",
}
#: bounds that keep pip within the image where its version is unknown: typer >= 0.29 requires
#: pydantic, which the image lacks (the wheels carry it for DeepSpeed)
BOUNDS = {"typer": "<0.29"}

#: what the rehearsal installs (pip adds their dependencies, all of them image packages too):
#: the GPU check's own needs and whatever the carried wheels require that the image provides
REHEARSAL = (
    "torch", "torchvision", "triton", "numpy", "matplotlib", "pytest", "pytest-timeout", "timm",
    "scipy", "transformers", "huggingface-hub", "tokenizers", "safetensors",
    "opencv-python-headless", "pyyaml", "rich", "regex", "tqdm", "packaging", "psutil", "ninja",
    "einops", "msgpack", "py-cpuinfo", "typing-extensions", "typer",
)

#: a requirement another distribution of the image meets: the module is the same
PROVIDED_BY = {"opencv-python": "opencv-python-headless"}  # cv2, without the GUI parts


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def rehearsal_requirements() -> list[str]:
    """pip requirements of the rehearsal environment: pinned where the image's version is known."""
    return [f"{name}=={VERSIONS[name]}" if name in VERSIONS else name + BOUNDS.get(name, "")
            for name in REHEARSAL]
