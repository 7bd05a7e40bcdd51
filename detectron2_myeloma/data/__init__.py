"""Data, as Detectron2 lays it out: ``datasets/`` (the readers of SegPC-2021 folders, MiMM_SBILab
PowerPoint decks, COCO json and per-instance mask folders, masks as COCO RLE, and their registration),
and beside it what reads and prepares images: the one image reader, region reads of large images, the
SegPC formats, the mapper and the cell augmentations."""
