"""Installs the ``hcml`` package and the ``hcml`` console script."""

from setuptools import find_packages, setup

setup(
    name="hcml",
    version="0.1.0",
    description="Motion-aware action recognition inline in GStreamer pipelines (HCML).",
    python_requires=">=3.11",
    packages=find_packages(include=["hcml", "hcml.*"]),
    install_requires=[
        # A local CPU build lies on this project's machines; plain `torch` pulls a CUDA build.
        "torch==2.13.0",
        "numpy>=1.26",
        "onnx>=1.17",
        "onnxruntime>=1.20",
        "onnxscript>=0.2",
        "onnxslim>=0.1.90",  # shrinks the exported graphs ~3x (constant/shape folding)
        "av>=13",
        "tqdm>=4.66",
        "pyyaml>=6",
        "matplotlib>=3.8",
        "tensorboard>=2.17",
        "scikit-learn>=1.3",  # bundled sample photos: the generator's training textures
        # hcmldetect / hcml run --detect hog: the bundled HOG people detector (no download);
        # OpenCV 5 moved HOGDescriptor out of the main wheel
        "opencv-python-headless>=4.9,<5",
    ],
    extras_require={
        # mypy type-checks the TensorRT and pyds modules (tests/test_typecheck.py) against
        # tensorrt-stubs and pyds-stubs, which the Makefile installs with --no-deps into
        # .venv/typestubs: as requirements they would pull the whole TensorRT 10.13 wheels
        # (tensorrt-stubs) or refuse this Python 3.11 (pyds-stubs wants exactly 3.12), and in
        # site-packages tensorrt-stubs' bare tensorrt/ folder would make `import tensorrt` succeed.
        "dev": ["pytest>=8", "pytest-timeout>=2.3", "hypothesis>=6.100", "ruff>=0.6", "mypy>=2.4"],
        # `hcml serve` / backend=triton: the gRPC client. The server itself is the `tritonserver`
        # binary inside nvidia-pytriton, which the Makefile installs with --no-deps: its
        # numpy<2 pin would downgrade numpy for the whole project, and only its binary is used.
        "serve": ["tritonclient[grpc]>=2.50"],
        # NVIDIA GPUs, CUDA 12 (README, "GPU"): TensorRT 10 or 11 (one strongly typed build path)
        # and ONNX Runtime's CUDA build. Not installed by `make setup`. A CUDA build of torch
        # comes from PyTorch's own index; DeepStream's pyds ships with the DeepStream SDK (the
        # PyPI package named pyds is unrelated).
        "gpu": ["tensorrt-cu12>=10.8,<12", "onnxruntime-gpu>=1.20"],
    },
    entry_points={"console_scripts": ["hcml=hcml.cli:main"]},
)
