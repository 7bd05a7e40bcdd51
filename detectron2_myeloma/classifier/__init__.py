"""The cell classifier: a timm EfficientNet that tells myeloma plasma cells from other cells in square
crops, from its crop folder to the post-hook that labels a detector's cells.

One concept per module: ``labels`` (the label space other layers share), ``config``, ``crops`` (the one
crop function of training and inference), ``negatives`` and ``dataset`` (the crop folder), ``model``,
``augmentation``, ``trainer``, ``evaluation`` and ``hook``. Importing :mod:`detectron2_myeloma` registers
the hook in :data:`~detectron2_myeloma.modeling.post_hooks.POST_HOOK_REGISTRY`.
"""
