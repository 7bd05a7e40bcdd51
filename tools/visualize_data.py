#!/usr/bin/env python
"""Look at a registered dataset: ground-truth overlays (Detectron2 Visualizer) and a summary of
instances per image and object sizes, in pixels (summary.json, sizes.png, printed table).

--output must be a new or empty folder (--overwrite replaces an earlier run's whole)."""
import _quiet  # noqa: F401  first: silences third-party warnings that are not the user's business
import argparse
import json
import os

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from detectron2.data import MetadataCatalog  # noqa: E402
from detectron2.utils.visualizer import Visualizer  # noqa: E402
from tabulate import tabulate  # noqa: E402
from tqdm import tqdm  # noqa: E402

import detectron2_myeloma  # noqa: E402,F401  registers the datasets
from detectron2_myeloma.data.catalog import dataset_dicts  # noqa: E402
from detectron2_myeloma.data.images import read_record_image  # noqa: E402
from detectron2_myeloma.data.statistics import equivalent_diameter, instance_size_summary  # noqa: E402
from detectron2_myeloma.engine.defaults import reports_input_errors  # noqa: E402
from detectron2_myeloma.utils.atomic import OutputFolder  # noqa: E402


@reports_input_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", help="registered dataset name, e.g. segpc_mini_train")
    parser.add_argument("--output", required=True, help="folder to write (new or empty)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run's --output folder")
    parser.add_argument("--max-images", type=int, default=20, help="overlays to draw (0: none)")
    parser.add_argument("--scale", type=float, default=0.5, help="overlay scale (full-size images are large)")
    args = parser.parse_args(argv)

    output = OutputFolder(args.output, args.overwrite, tool="visualize_data")
    dicts = dataset_dicts(args.dataset, "dataset")
    meta = MetadataCatalog.get(args.dataset)
    with output as folder:
        for record in tqdm(dicts[: args.max_images], desc="overlays"):
            image = read_record_image(record)[:, :, ::-1]
            vis = Visualizer(image, metadata=meta, scale=args.scale).draw_dataset_dict(record)
            name = f"{os.path.splitext(os.path.basename(record['file_name']))[0]}.png"
            cv2.imwrite(os.path.join(folder, name), vis.get_image()[:, :, ::-1])
        summary = instance_size_summary(dicts, meta.thing_classes)
        with open(os.path.join(folder, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
        _plot_sizes(dicts, meta.thing_classes, os.path.join(folder, "sizes.png"))
    rows = [[name, s.get("count"), *(round(s.get(f"diameter_p{p}", np.nan), 1) for p in (5, 50, 95))]
            for name, s in summary.items() if name != "images"]
    img = summary["images"]
    print(f"{args.dataset}: {img['count']} images, instances per image: median "
          f"{img.get('instances_p50', 0):.0f}, max {img.get('instances_max', 0):.0f}")
    print(tabulate(rows, headers=["class", "instances", "diam p5", "diam p50", "diam p95"]))
    print(f"overlays, summary.json and sizes.png in {args.output}")
    return 0


def _plot_sizes(dicts, thing_classes, path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].hist([len(d["annotations"]) for d in dicts], bins=20)
    axes[0].set(title="instances per image", xlabel="instances", ylabel="images")
    for cid, name in enumerate(thing_classes):
        diam = [equivalent_diameter(a) for d in dicts for a in d["annotations"] if a["category_id"] == cid]
        if diam:
            axes[1].hist(diam, bins=30, alpha=0.6, label=name)
    axes[1].set(title="object size", xlabel="equivalent diameter (pixels)", ylabel="instances")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
