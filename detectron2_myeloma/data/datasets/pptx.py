"""MiMM_SBILab PowerPoint decks -> Detectron2 dataset dicts.

MiMM_SBILab marks plasma cells by drawing shapes over the bone-marrow picture on each slide, and how
they are drawn is not documented, so every common kind of drawing is read: ovals, rectangles, rounded
rectangles, freeforms (custom geometry), open outlines that nearly close, groups, rotations and flips.
Each closed mark becomes one instance mask, rasterised at the resolution of the image it lies on; the
picture's position, size and crop on the slide give the slide -> image mapping.
"""
import logging
import math
import os
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple, Union

import numpy as np
import shapely
from pptx import Presentation
from pptx.shapes.base import BaseShape
from pptx.shapes.group import GroupShape
from pptx.shapes.picture import Picture
from shapely import affinity
from shapely.geometry import Polygon, box
from shapely.ops import unary_union
from shapely.validation import make_valid
from tqdm import tqdm

from ...utils.atomic import write_atomic
from ..masks import annotation_from_mask
from ..report import ConversionReport, DatasetError
from ..images import image_files, image_size, image_stem, read_image

logger = logging.getLogger(__name__)

_A = "{http://schemas.openxmlformats.org/drawingml/2006/main}"
_P = "{http://schemas.openxmlformats.org/presentationml/2006/main}"
_MC = "{http://schemas.openxmlformats.org/markup-compatibility/2006}"
_PAINTS = ("solidFill", "gradFill", "blipFill", "pattFill", "grpFill")
_ELLIPSE_POINTS = 128  # a 128-gon is within 0.03 % of the ellipse's radius
_CURVE_POINTS = 16  # per Bezier segment or quarter arc
_CLOSE_GAP = 0.05  # an open outline whose ends are this close (fraction of its diagonal) is closed
_TRUE = ("1", "true")


class _Skip(Exception):
    """A shape left out on purpose; the message is the reason reported."""


def _local(elm) -> str:
    return elm.tag.rsplit("}", 1)[-1]


def _num(value: Optional[str]) -> float:
    """A path coordinate or angle; guide names (formulas) are not evaluated."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _Skip("custom geometry uses guide formulas") from None


def _placement(shape: BaseShape) -> Optional[np.ndarray]:
    """Matrix from the shape's own box (0..cx, 0..cy) to its parent's coordinates.

    DrawingML flips the box about its centre, rotates it clockwise about the centre, then moves it to
    its offset. Sizes come from python-pptx so that placeholders inherit them from the layout.
    """
    if None in (shape.left, shape.top, shape.width, shape.height):
        return None
    x, y, cx, cy = float(shape.left), float(shape.top), float(shape.width), float(shape.height)
    xfrm = shape.element.find(f"./*/{_A}xfrm")
    flip_x = -1.0 if xfrm is not None and xfrm.get("flipH") in _TRUE else 1.0
    flip_y = -1.0 if xfrm is not None and xfrm.get("flipV") in _TRUE else 1.0
    theta = math.radians(shape.rotation)
    c, s = math.cos(theta), math.sin(theta)
    centred = np.array([[flip_x, 0, -flip_x * cx / 2], [0, flip_y, -flip_y * cy / 2], [0, 0, 1]])
    rotated = np.array([[c, -s, x + cx / 2], [s, c, y + cy / 2], [0, 0, 1]])
    return rotated @ centred


def _child_space(group: GroupShape) -> np.ndarray:
    """Matrix from a group's child coordinates (chOff/chExt) to its own box (0..ext)."""
    xfrm = group.element.find(f"{_P}grpSpPr/{_A}xfrm")
    ch_off = xfrm.find(f"{_A}chOff") if xfrm is not None else None
    ch_ext = xfrm.find(f"{_A}chExt") if xfrm is not None else None
    if ch_off is None or ch_ext is None:
        return np.eye(3)
    sx = group.width / int(ch_ext.get("cx")) if int(ch_ext.get("cx")) else 1.0
    sy = group.height / int(ch_ext.get("cy")) if int(ch_ext.get("cy")) else 1.0
    return np.array([[sx, 0, -sx * int(ch_off.get("x"))], [0, sy, -sy * int(ch_off.get("y"))], [0, 0, 1]])


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def _walk(shapes, to_slide: np.ndarray, where: str, report: ConversionReport
          ) -> Iterator[Tuple[BaseShape, np.ndarray, str]]:
    """Pictures and candidate marks with their own-box -> slide matrices, groups opened recursively."""
    for shape in shapes:
        shape_where = f"{where} shape {shape.shape_id} '{shape.name}'"
        kind = _local(shape.element)
        cnvpr = shape.element.find(f"./*/{_P}cNvPr")
        if kind == "contentPart":
            report.skip(shape_where, "ink or alternate content not supported")
        elif kind not in ("sp", "cxnSp", "pic", "grpSp"):
            report.skip(shape_where, "not a mark")
        elif cnvpr is not None and cnvpr.get("hidden") in _TRUE:
            report.skip(shape_where, "hidden shape")
        elif (placed := _placement(shape)) is None:
            report.skip(shape_where, "shape has no position")
        elif isinstance(shape, GroupShape):
            yield from _walk(shape.shapes, to_slide @ placed @ _child_space(shape), where, report)
        else:
            yield shape, to_slide @ placed, shape_where


def _paint(elm) -> Optional[bool]:
    """True/False when ``elm`` says how it is painted, None when it leaves that to the style."""
    for child in elm:
        if _local(child) == "noFill":
            return False
        if _local(child) in _PAINTS:
            return True
    return None


def _is_drawn(elm) -> bool:
    """Whether a shape shows a fill or an outline; text boxes and placeholders usually show neither."""
    sp_pr, style = elm.find(f"{_P}spPr"), elm.find(f"{_P}style")

    def by_style(ref: str) -> bool:
        found = style.find(f"{_A}{ref}") if style is not None else None
        return found is not None and found.get("idx", "0") != "0"

    line = sp_pr.find(f"{_A}ln") if sp_pr is not None else None
    fill = _paint(sp_pr) if sp_pr is not None else None
    outline = _paint(line) if line is not None else None
    return bool((by_style("fillRef") if fill is None else fill)
                or (by_style("lnRef") if outline is None else outline))


def _ellipse(cx: float, cy: float, rx: float, ry: float, start: float, sweep: float, n: int) -> np.ndarray:
    t = np.linspace(start, start + sweep, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _preset_outline(geom, prst: str, w: float, h: float) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """(closed, open) outlines of the preset shapes used to mark cells, in the shape's own box."""
    if prst in ("ellipse", "flowChartConnector"):
        return [_ellipse(w / 2, h / 2, w / 2, h / 2, 0, 2 * math.pi, _ELLIPSE_POINTS)[:-1]], []
    if prst in ("rect", "flowChartProcess"):
        return [np.array([[0, 0], [w, 0], [w, h], [0, h]], float)], []
    if prst in ("roundRect", "flowChartAlternateProcess"):
        adj = 16667.0  # the preset's default corner, 1/100000 of the shorter side
        for gd in geom.iterfind(f"{_A}avLst/{_A}gd"):
            if gd.get("name") == "adj" and gd.get("fmla", "").startswith("val "):
                adj = _num(gd.get("fmla")[4:])
        r = min(w, h) * min(max(adj, 0.0), 50000.0) / 100000
        corners = [(w - r, h - r, 0), (r, h - r, 1), (r, r, 2), (w - r, r, 3)]  # clockwise from bottom-right
        arcs = [_ellipse(x, y, r, r, q * math.pi / 2, math.pi / 2, _CURVE_POINTS) for x, y, q in corners]
        return [np.concatenate(arcs)], []
    if prst == "line" or "Connector" in prst:
        return [], [np.array([[0, 0], [w, h]], float)]
    raise _Skip(f"unsupported shape '{prst}'")


def _custom_outline(geom, w: float, h: float) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """(closed, open) subpaths of an ``a:custGeom``, curves sampled, scaled from path w/h to the box."""
    closed: List[np.ndarray] = []
    opened: List[np.ndarray] = []
    for path in geom.iterfind(f"{_A}pathLst/{_A}path"):
        pw, ph = _num(path.get("w", "0")), _num(path.get("h", "0"))
        scale = np.array([w / pw if pw else 1.0, h / ph if ph else 1.0])
        points: List[np.ndarray] = []

        def finish(is_closed: bool) -> None:
            if len(points) > 1:
                (closed if is_closed else opened).append(np.array(points) * scale)
            points.clear()

        for cmd in path:
            name = _local(cmd)
            pts = [np.array([_num(p.get("x")), _num(p.get("y"))]) for p in cmd.iterfind(f"{_A}pt")]
            if name == "moveTo":
                finish(False)
                points.extend(pts)
            elif name == "lnTo":
                points.extend(pts)
            elif name in ("cubicBezTo", "quadBezTo") and points:
                ctrl = [points[-1]] + pts
                degree = len(ctrl) - 1
                for t in np.linspace(0, 1, _CURVE_POINTS + 1)[1:]:
                    points.append(sum(math.comb(degree, k) * (1 - t) ** (degree - k) * t ** k * p
                                      for k, p in enumerate(ctrl)))
            elif name == "arcTo" and points:
                # Angles are visual (60000ths of a degree): map each to the ellipse's parameter.
                wr, hr = _num(cmd.get("wR")), _num(cmd.get("hR"))
                start, sweep = (math.radians(_num(cmd.get(k)) / 60000) for k in ("stAng", "swAng"))
                quarters = max(1, math.ceil(abs(sweep) / (math.pi / 2)))
                angles = np.linspace(start, start + sweep, _CURVE_POINTS * quarters)
                t = np.arctan2(wr * np.sin(angles), hr * np.cos(angles))
                arc = np.stack([wr * np.cos(t), hr * np.sin(t)], axis=1)
                points.extend(arc[1:] + (points[-1] - arc[0]))
            elif name == "close":
                finish(True)
        finish(False)
    return closed, opened


def _mark_region(shape: BaseShape, to_slide: np.ndarray):
    """The area a mark encloses, as a shapely geometry in slide EMU; raises _Skip with the reason."""
    elm = shape.element
    if _local(elm) not in ("sp", "cxnSp") or not _is_drawn(elm):
        raise _Skip("not a mark")
    w, h = float(shape.width), float(shape.height)
    preset, custom = elm.find(f"{_P}spPr/{_A}prstGeom"), elm.find(f"{_P}spPr/{_A}custGeom")
    if custom is not None:
        closed, opened = _custom_outline(custom, w, h)
    elif preset is not None:
        closed, opened = _preset_outline(preset, preset.get("prst", ""), w, h)
    else:
        raise _Skip("shape has no geometry")
    rings = [_apply(to_slide, ring) for ring in closed]
    for line in (_apply(to_slide, line) for line in opened):
        diagonal = np.linalg.norm(line.max(axis=0) - line.min(axis=0))
        if len(line) > 2 and np.linalg.norm(line[-1] - line[0]) <= _CLOSE_GAP * diagonal:
            rings.append(line)
    region = unary_union([make_valid(Polygon(ring)) for ring in rings if len(ring) > 2])
    if region.area <= 0:
        raise _Skip("line does not enclose an area")
    return region


def _rasterise(geom, height: int, width: int) -> np.ndarray:
    """Boolean mask of the pixels whose centres lie inside ``geom`` (pixel (i, j) is [j, j+1) x [i, i+1)).

    Exact point-in-polygon tests on the geometry's bounding window; cv2.fillPoly would also paint the
    rounded outline, growing every mask by about half a pixel.
    """
    mask = np.zeros((height, width), bool)
    x0, y0, x1, y1 = geom.bounds
    c0, c1 = max(0, math.floor(x0)), min(width, math.ceil(x1))
    r0, r1 = max(0, math.floor(y0)), min(height, math.ceil(y1))
    shapely.prepare(geom)
    xs, ys = np.meshgrid(np.arange(c0, c1) + 0.5, np.arange(r0, r1) + 0.5)
    mask[r0:r1, c0:c1] = shapely.contains_xy(geom, xs, ys)
    return mask


class _ImageFolder:
    """External images matched by stem or by pixel size (sizes read once, when first needed)."""

    def __init__(self, folder: str):
        self.folder = folder
        self.paths = [os.path.abspath(p) for p in image_files(folder)]
        self.by_stem = {image_stem(p).lower(): p for p in self.paths}
        self._sizes: Dict[str, Union[Tuple[int, int], DatasetError]] = {}

    def size(self, path: str) -> Union[Tuple[int, int], DatasetError]:
        """(height, width), or the error that says why the image cannot be read."""
        if path not in self._sizes:
            try:
                self._sizes[path] = image_size(path)
            except DatasetError as err:
                self._sizes[path] = err
        return self._sizes[path]

    def match(self, names: List[str], size: Optional[Tuple[int, int]]) -> Tuple[Optional[str], str]:
        """(path, "") or (None, why not)."""
        for name in names:
            path = self.by_stem.get(os.path.splitext(os.path.basename(name))[0].lower())
            if path:
                return path, ""
        if size is None:
            return None, f"no image in {self.folder} is named like the picture"
        same = [p for p in self.paths if self.size(p) == size]
        if len(same) != 1:
            shown = ", ".join(os.path.basename(p) for p in same[:4]) + (" ..." if len(same) > 4 else "")
            return None, (f"no image in {self.folder} is named like the picture or has its size {size[1]}x{size[0]}"
                          if not same else f"picture matches {len(same)} images by size ({shown}): ambiguous")
        return same[0], ""


class _Image(NamedTuple):
    file_name: str
    image_id: str
    height: int
    width: int


class _Shown(NamedTuple):
    """A picture on a slide."""
    outline: Polygon  # its box, in slide EMU
    image: Optional[_Image]  # None when the image it shows could not be found
    to_pixels: Optional[np.ndarray]  # slide EMU -> image pixels


def _pixel_matrix(picture: Picture, to_slide: np.ndarray, height: int, width: int) -> np.ndarray:
    """Slide EMU -> image pixels: the part of the image left by the crop fills the picture's box."""
    crop = np.array([picture.crop_left, picture.crop_top, picture.crop_right, picture.crop_bottom])
    size = np.array([width, height], float)
    box_to_pixels = np.diag([*((1 - crop[:2] - crop[2:]) * size / [picture.width, picture.height]), 1.0])
    box_to_pixels[:2, 2] = crop[:2] * size
    return box_to_pixels @ np.linalg.inv(to_slide)


@dataclass
class _Reader:
    folder: Optional[_ImageFolder]
    extract_dir: str
    category_id: int
    min_area: float
    strict: bool
    report: ConversionReport
    created: List[str]  # folders and files this reader made, outermost first (removed on failure)
    used: Dict[str, str] = field(default_factory=dict)  # external image -> the picture that showed it

    def deck(self, path: str) -> List[dict]:
        prs = self.report.attempt(self.strict, _open_deck, path)
        if prs is None:
            return []
        stem = os.path.splitext(os.path.basename(path))[0]
        single = sum(1 for slide in prs.slides for _ in slide.element.iter(f"{_P}pic")) == 1
        records: List[dict] = []
        slides = tqdm(prs.slides, desc=os.path.basename(path), unit="slide", total=len(prs.slides))
        for number, slide in enumerate(slides, start=1):
            skipped_before = len(self.report.skipped)
            found = self.slide(slide, path, number, stem, single)
            kept = sum(len(record["annotations"]) for record in found)
            skipped = Counter(reason for _, reason in self.report.skipped[skipped_before:])
            logger.info("%s slide %d: kept %d marks, skipped %s", path, number, kept, dict(skipped) or "none")
            self.report.images += len(found)
            self.report.instances += kept
            records += found
        return records

    def slide(self, slide, path: str, number: int, stem: str, single: bool) -> List[dict]:
        """One record per picture of the slide whose image was found."""
        where = f"{path} slide {number}"
        for _ in slide.element.iter(f"{_MC}AlternateContent"):
            self.report.skip(where, "ink or alternate content not supported")
        shapes = list(_walk(slide.shapes, np.eye(3), where, self.report))
        pictures = [(s, m, w) for s, m, w in shapes if isinstance(s, Picture) and s.width and s.height]
        if not pictures:
            self.report.skip(where, "slide has no picture")
            return []
        shown = []
        for k, (picture, to_slide, picture_where) in enumerate(pictures, start=1):
            image_id = f"{stem}_s{number}" + (f"_p{k}" if len(pictures) > 1 else "")
            names = [picture.element.find(f"./*/{_P}cNvPr").get("descr", ""), picture.name, slide.name, image_id]
            corners = np.array([[0, 0], [picture.width, 0], [picture.width, picture.height], [0, picture.height]])
            image, why = self.image(picture, image_id, names + ([stem] if single else []), picture_where)
            if image is None:
                self.report.problem(picture_where, why, self.strict)
            matrix = _pixel_matrix(picture, to_slide, image.height, image.width) if image else None
            shown.append(_Shown(Polygon(_apply(to_slide, corners)), image, matrix))
        annotations: List[List[dict]] = [[] for _ in shown]
        for shape, to_slide, shape_where in shapes:
            if not isinstance(shape, Picture):
                try:
                    k, annotation = self.mark(shape, to_slide, shown)
                    annotations[k].append(annotation)
                except _Skip as skip:
                    self.report.skip(shape_where, str(skip))
        return [{"file_name": image.file_name, "image_id": image.image_id, "height": image.height,
                 "width": image.width, "annotations": anns, "source_pptx": os.path.abspath(path),
                 "source_slide": number}
                for (_, image, _), anns in zip(shown, annotations) if image is not None]

    def mark(self, shape: BaseShape, to_slide: np.ndarray, shown: List[_Shown]) -> Tuple[int, dict]:
        """(index of the picture the mark overlaps most, its annotation); raises _Skip with the reason."""
        region = _mark_region(shape, to_slide)
        overlaps = [region.intersection(image.outline).area for image in shown]
        k = max(range(len(shown)), key=lambda i: (overlaps[i], i))  # on a tie, the topmost picture
        if overlaps[k] <= 0:
            raise _Skip("outside the picture")
        _, image, m = shown[k]
        if image is None:
            raise _Skip("its picture was left out")
        pixels = affinity.affine_transform(region, [m[0, 0], m[0, 1], m[1, 0], m[1, 1], m[0, 2], m[1, 2]])
        pixels = pixels.intersection(box(0, 0, image.width, image.height))
        if pixels.is_empty:
            raise _Skip("outside the picture")
        annotation = None
        if pixels.area >= self.min_area:
            annotation = annotation_from_mask(_rasterise(pixels, image.height, image.width), self.category_id,
                                              source_shape=shape.name, source_shape_id=shape.shape_id)
        if annotation is None:
            raise _Skip("too small to be a cell")
        return k, annotation

    def image(self, picture: Picture, image_id: str, names: List[str], where: str
              ) -> Tuple[Optional[_Image], str]:
        """(the image a picture shows, "") or (None, why not).

        The embedded image is extracted, or else the matching external image is used; it may have a
        higher resolution than the embedded one, but not another aspect ratio.
        """
        try:
            blob, ext = picture.image.blob, picture.image.ext
        except (ValueError, KeyError):  # linked, not embedded
            blob, ext = None, ""
        size = None
        if blob:
            try:
                size = _embedded_size(blob, ext)
            except DatasetError as err:
                return None, f"embedded picture (.{ext}) cannot be read: {err.problem}"
        if self.folder is None:
            if size is None:
                return None, "picture is linked, not embedded, and no image folder was given"
            path = os.path.abspath(os.path.join(self.extract_dir, f"{image_id}.{ext}"))
            self.extract(path, blob)
            return _Image(path, image_id, *size), ""
        path, why = self.folder.match(names, size)
        if path is None:
            return None, why
        found = self.folder.size(path)
        if isinstance(found, DatasetError):
            return None, f"cannot read image {found}"
        if size is not None and abs(found[0] * size[1] - found[1] * size[0]) > 0.01 * found[0] * size[1]:
            return None, (f"{path} is {found[1]}x{found[0]}, not a rescale of the embedded "
                          f"{size[1]}x{size[0]} picture")
        if path in self.used:
            return None, f"{path} is already shown by {self.used[path]}"
        self.used[path] = where
        return _Image(path, os.path.splitext(os.path.basename(path))[0], *found), ""

    def extract(self, path: str, blob: bytes) -> None:
        """Write an embedded picture, recording the folders and the file that did not exist before."""
        missing: List[str] = []
        folder = os.path.dirname(path)
        while not os.path.exists(folder):
            missing.insert(0, folder)
            folder = os.path.dirname(folder)
        existed = os.path.exists(path)
        write_atomic(path, blob)
        self.created += missing + ([] if existed else [path])


def _open_deck(path: str) -> Presentation:
    """The presentation in ``path``; a file that is not one raises DatasetError saying so (python-pptx
    calls every file that is not a zip archive "Package not found", even one that exists)."""
    try:
        with zipfile.ZipFile(path):
            pass
    except zipfile.BadZipFile:
        raise DatasetError(path, "not a PowerPoint .pptx file (not a zip archive: truncated, damaged or "
                                 "another format)") from None
    except OSError as err:
        raise DatasetError(path, f"cannot open ({err.strerror or err})") from None
    try:
        return Presentation(path)
    except Exception as err:  # python-pptx reports a damaged package through many exception types
        raise DatasetError(path, f"not a PowerPoint .pptx file ({type(err).__name__}: {err})") from None


def _embedded_size(blob: bytes, ext: str) -> Tuple[int, int]:
    """(height, width) of an embedded picture, decoded in full by the shared reader (which reads files),
    so that a truncated picture is refused rather than extracted."""
    with tempfile.TemporaryDirectory(prefix="pptx-picture-") as folder:
        path = os.path.join(folder, f"picture.{ext}")
        with open(path, "wb") as f:
            f.write(blob)
        return read_image(path).shape[:2]


def remove_created(paths: List[str]) -> None:
    """Undo a failed read: remove the files and (then empty) folders in ``paths``, innermost first."""
    for path in reversed(paths):
        try:
            if os.path.isdir(path):
                os.rmdir(path)
            else:
                os.remove(path)
        except FileNotFoundError:
            pass
        except OSError as err:  # e.g. a folder someone else has written into meanwhile
            logger.warning("could not remove %s: %s", path, err)


def _deck_paths(pptx_path: str, report: ConversionReport, strict: bool) -> List[str]:
    if os.path.isdir(pptx_path):
        names = sorted(n for n in os.listdir(pptx_path) if n.lower().endswith(".pptx") and not n.startswith("~$"))
        if not names:
            report.problem(pptx_path, "folder holds no .pptx file", strict)
        return [os.path.join(pptx_path, n) for n in names]
    if not os.path.isfile(pptx_path):
        report.problem(pptx_path, "no such file or folder", strict)
        return []
    return [pptx_path]


def load_pptx_dataset(pptx_path: str, image_dir: Optional[str], extract_dir: str, *, category_id: int = 0,
                      min_area: float = 100.0, strict: bool = True, report: Optional[ConversionReport] = None,
                      created: Optional[List[str]] = None) -> List[dict]:
    """Dataset dicts for the pictures on the slides of one deck or of every deck in a folder (sorted).

    Each picture is one image: extracted into ``extract_dir`` when ``image_dir`` is None, else the file of
    ``image_dir`` with the picture's name (alt text, shape name, slide name, "<deck>_s<n>", the deck's
    name when it holds one picture) or, failing that, its pixel size. Each mark becomes one annotation on
    the picture it overlaps most. Slides with no picture and marks that cannot be cells are reported as
    skipped, with the reason, not as errors; a per-slide summary is logged at INFO level.

    The files and folders extracted that did not exist before are appended to ``created`` (for a caller
    that may still fail afterwards: :func:`remove_created`); when reading fails they are removed here.
    """
    report = report if report is not None else ConversionReport()
    if image_dir is not None and not os.path.isdir(image_dir):
        raise DatasetError(image_dir, "image folder not found")
    reader = _Reader(_ImageFolder(image_dir) if image_dir is not None else None, extract_dir, category_id,
                     min_area, strict, report, created=[])
    try:
        records = [record for deck in _deck_paths(pptx_path, report, strict) for record in reader.deck(deck)]
    except BaseException:
        remove_created(reader.created)
        raise
    if created is not None:
        created += reader.created
    return records
