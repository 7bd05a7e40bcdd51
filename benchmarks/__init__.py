"""The research harness, outside the installed package: speed benchmarks (``make bench``) and the
seed-repeated comparison of Mask R-CNN and R-Mask R-CNN (``python -m benchmarks.compare``)."""
