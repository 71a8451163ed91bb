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
    ],
    extras_require={
        "dev": ["pytest>=8", "pytest-timeout>=2.3", "hypothesis>=6.100", "ruff>=0.6"],
        # `hcml serve` / backend=triton: the gRPC client. The server itself is the `tritonserver`
        # binary inside nvidia-pytriton, which the Makefile installs with --no-deps: its
        # numpy<2 pin would downgrade numpy for the whole project, and only its binary is used.
        "serve": ["tritonclient[grpc]>=2.50"],
        # TensorRT, pycuda-free CUDA via torch, and DeepStream's pyds are installed from NVIDIA's
        # own channels (see README); they are never pulled from PyPI by this project.
    },
    entry_points={"console_scripts": ["hcml=hcml.cli:main"]},
)
