"""The readers: SegPC-2021 folders, MiMM_SBILab PowerPoint decks, COCO json and per-instance mask folders
-> Detectron2 dataset dicts; the converter to COCO json; and ``builtin``, which registers this project's
datasets in Detectron2's catalogs (as ``detectron2.data.datasets`` does for COCO and LVIS)."""
