"""Install the dependencies: pip install -e ".[cpu,test]" (CPU) or ".[gpu,test]" (CUDA);
add "serve" for the web app (serve.py), "beam" for batch_inpaint.py and "onnx" for
export.py --format onnx|tflite.

No module is installed: the code runs from the checkout (python test.py, train.py, ...,
from the repository root), like the official DeepFill release. See DEVELOPERS.md, "Install".
"""
from setuptools import setup

setup(
    name="deepfill-tf2",
    version="0.1.0",
    description="DeepFill v1 (Generative Image Inpainting with Contextual Attention) in TensorFlow 2 / Keras 3",
    packages=[],
    py_modules=[],
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.26,<2.5",
        "opencv-python-headless>=4.8",
        "absl-py>=2.0",
        "pillow>=10",
    ],
    extras_require={
        "cpu": ["tensorflow-cpu==2.21.0"],
        "gpu": ["tensorflow[and-cuda]==2.21.0"],
        # The web app (serve.py): an ASGI app served by uvicorn; multipart uploads.
        "serve": ["fastapi>=0.110", "uvicorn>=0.29", "python-multipart>=0.0.9"],
        # httpx drives the API tests; playwright drives the system's Chromium (the browser
        # itself comes from apt: tests/install_browser.sh, run by the README's test command).
        "test": ["pytest>=8", "httpx>=0.27", "playwright>=1.40"],
        # Apache Beam for batch_inpaint.py; 2.78.0 installs beside tensorflow-cpu 2.21 without
        # moving it (protobuf goes to 6.33.x, inside TensorFlow's range). 2.77.0 required
        # pillow<13 and held Pillow back at 12.3 in an install with every extra; 2.78.0 allows
        # pillow<14 (13.0 then). The EXIF orientation rule does not depend on the Pillow
        # version (model/fileio/decode.py reads the block itself).
        "beam": ["apache-beam==2.78.0"],
        # export.py --format onnx|tflite and their tests: tf2onnx converts, ONNX Runtime and
        # LiteRT run the files. These install beside tensorflow-cpu 2.21 without moving it.
        "onnx": ["tf2onnx==1.17.0", "onnx==1.23.2", "onnxruntime==1.32.0",
                 "ai-edge-litert==2.3.0"],
    },
)
