"""Readers that turn SegPC-2021 folders, MiMM_SBILab PowerPoint decks, COCO json and per-instance mask
folders into Detectron2 dataset dicts (masks as COCO RLE), and their registration."""
