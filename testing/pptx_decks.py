"""PowerPoint decks built with python-pptx in the MiMM_SBILab layout, with the expected mask of every
shape computed independently of the reader (image pixel centres mapped back onto the slide through the
picture's position, size and crop, group transforms and rotations, and tested against the analytic
ellipse / rectangle / polygon). Used by the reader's tests and by the conversion benchmark."""
import math

import cv2
import numpy as np
import shapely
from pptx import Presentation
from pptx.enum.shapes import MSO_CONNECTOR, MSO_SHAPE
from pptx.oxml import parse_xml
from pptx.util import Emu

W, H = 400, 300
_A = "{http://schemas.openxmlformats.org/drawingml/2006/main}"

# Slide 1: the picture scaled to 15000 EMU per image pixel.
P1 = dict(left=1_000_000, top=500_000, width=6_000_000, height=4_500_000, crop=(0.0, 0.0, 0.0, 0.0))
# Slide 2: cropped on all four sides (left, top, right, bottom) and stretched unevenly.
P2 = dict(left=2_000_000, top=1_000_000, width=5_000_000, height=4_000_000, crop=(0.1, 0.15, 0.2, 0.05))
# Slide 4: two pictures side by side.
PA = dict(left=500_000, top=1_500_000, width=4_000_000, height=3_000_000, crop=(0.0, 0.0, 0.0, 0.0))
PB = dict(PA, left=5_000_000)


def px(x: float, y: float):
    """Slide EMU of a point given in slide-1 image pixels."""
    return P1["left"] + x * 15_000, P1["top"] + y * 15_000


# Slide 1 groups: an outer group (rotated, stretched unevenly) holding an oval and an inner group.
OUTER = dict(off=px(30, 210), ext=(160 * 15_000, 60 * 15_000), ch_off=(10_000, 20_000), ch_ext=(200_000, 100_000),
             rot=10.0)
INNER = dict(off=(120_000, 20_000), ext=(80_000, 100_000), ch_off=(0, 0), ch_ext=(40_000, 40_000), rot=0.0)

# ----------------------------------------------------------------- independent geometry


def pixel_centres(pic: dict, width: int = W, height: int = H):
    """Slide EMU (X, Y) of every pixel centre of the image that ``pic`` shows."""
    l, t, r, b = pic["crop"]
    fx = ((np.arange(width) + 0.5) / width - l) / (1 - l - r)
    fy = ((np.arange(height) + 0.5) / height - t) / (1 - t - b)
    return np.meshgrid(pic["left"] + fx * pic["width"], pic["top"] + fy * pic["height"])


def unrotate(X, Y, cx, cy, degrees):
    """Undo a clockwise (y down) rotation about (cx, cy)."""
    a = math.radians(-degrees)
    dx, dy = X - cx, Y - cy
    return cx + dx * math.cos(a) - dy * math.sin(a), cy + dx * math.sin(a) + dy * math.cos(a)


def in_group(g: dict, inside):
    """``inside`` (in the group's child coordinates) seen from the group's parent."""
    def test(X, Y):
        X, Y = unrotate(X, Y, g["off"][0] + g["ext"][0] / 2, g["off"][1] + g["ext"][1] / 2, g["rot"])
        return inside(g["ch_off"][0] + (X - g["off"][0]) * g["ch_ext"][0] / g["ext"][0],
                      g["ch_off"][1] + (Y - g["off"][1]) * g["ch_ext"][1] / g["ext"][1])
    return test


def ellipse(left, top, w, h, rot=0.0):
    def inside(X, Y):
        X, Y = unrotate(X, Y, left + w / 2, top + h / 2, rot)
        return ((X - left - w / 2) / (w / 2)) ** 2 + ((Y - top - h / 2) / (h / 2)) ** 2 <= 1
    return inside


def rectangle(left, top, w, h, rot=0.0):
    def inside(X, Y):
        X, Y = unrotate(X, Y, left + w / 2, top + h / 2, rot)
        return (abs(X - left - w / 2) <= w / 2) & (abs(Y - top - h / 2) <= h / 2)
    return inside


def rounded(left, top, w, h, radius):
    def inside(X, Y):
        nearest_x = np.clip(X, left + radius, left + w - radius)
        nearest_y = np.clip(Y, top + radius, top + h - radius)
        return rectangle(left, top, w, h)(X, Y) & ((X - nearest_x) ** 2 + (Y - nearest_y) ** 2 <= radius ** 2)
    return inside


def polygon(*outlines):
    return lambda X, Y: shapely.contains_xy(shapely.MultiPolygon([shapely.Polygon(v) for v in outlines]), X, Y)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / max((a | b).sum(), 1)

# ----------------------------------------------------------------- decks


def write_png(path, width=W, height=H, seed=0):
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.uint8)
    img[:] = np.linspace(60, 200, width, dtype=np.uint8)[None, :, None]
    for _ in range(12):
        cv2.circle(img, (int(rng.integers(width)), int(rng.integers(height))), int(rng.integers(5, 40)),
                   tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
    cv2.imwrite(str(path), img)
    return path


def add_picture(slide, png, pic):
    shape = slide.shapes.add_picture(str(png), Emu(pic["left"]), Emu(pic["top"]), Emu(pic["width"]),
                                     Emu(pic["height"]))
    shape.crop_left, shape.crop_top, shape.crop_right, shape.crop_bottom = pic["crop"]
    return shape


def add(shapes, kind, name, left, top, w, h, rot=0.0):
    shape = shapes.add_shape(kind, Emu(int(left)), Emu(int(top)), Emu(int(w)), Emu(int(h)))
    shape.name, shape.rotation = name, rot
    return shape


def freeform(shapes, name, vertices, close=True):
    builder = shapes.build_freeform(*vertices[0])
    builder.add_line_segments(vertices[1:], close=close)
    shape = builder.convert_to_shape()
    shape.name = name
    return shape


def add_custom(shapes, name, left, top, w, h, path_xml):
    """A shape whose geometry is the given ``a:path`` (custom geometry written by hand)."""
    shape = add(shapes, MSO_SHAPE.RECTANGLE, name, left, top, w, h)
    preset = shape.element.find(f"./*/{_A}prstGeom")
    preset.addprevious(parse_xml(f'<a:custGeom xmlns:a="{_A[1:-1]}"><a:pathLst>{path_xml}</a:pathLst></a:custGeom>'))
    preset.getparent().remove(preset)
    return shape


def bezier(*ctrl, n=400):
    t = np.linspace(0, 1, n)[:, None]
    degree = len(ctrl) - 1
    return sum(math.comb(degree, k) * (1 - t) ** (degree - k) * t ** k * np.array(p, float)
               for k, p in enumerate(ctrl))


# In a 200 x 100 path space, two subpaths: a pie slice of the ellipse with 100 x 50 radii centred at
# (100, 50), from visual angle 0 to 60 degrees (arcTo); a blob bounded by a cubic and a quadratic Bezier.
CURVY_PATH = ('<a:path w="200" h="100"><a:moveTo><a:pt x="100" y="50"/></a:moveTo>'
              '<a:lnTo><a:pt x="200" y="50"/></a:lnTo><a:arcTo wR="100" hR="50" stAng="0" swAng="3600000"/>'
              '<a:close/><a:moveTo><a:pt x="20" y="40"/></a:moveTo>'
              '<a:cubicBezTo><a:pt x="30" y="0"/><a:pt x="80" y="0"/><a:pt x="90" y="30"/></a:cubicBezTo>'
              '<a:quadBezTo><a:pt x="60" y="50"/><a:pt x="20" y="40"/></a:quadBezTo><a:close/></a:path>')


def curvy_outlines():
    """CURVY_PATH's two outlines in path units; the arc from the ellipse's polar radius at each angle."""
    angles = np.radians(np.linspace(0, 60, 400))
    radius = 1 / np.sqrt((np.cos(angles) / 100) ** 2 + (np.sin(angles) / 50) ** 2)
    pie = np.concatenate([[(100, 50)], np.stack([100 + radius * np.cos(angles), 50 + radius * np.sin(angles)], 1)])
    blob = np.concatenate([bezier((20, 40), (30, 0), (80, 0), (90, 30)), bezier((90, 30), (60, 50), (20, 40))])
    return pie, blob


def set_group_xfrm(group, g):
    xfrm = group.element.find(f"./*/{_A}xfrm")
    for tag, (a, b), keys in (("off", g["off"], "xy"), ("ext", g["ext"], ("cx", "cy")),
                              ("chOff", g["ch_off"], "xy"), ("chExt", g["ch_ext"], ("cx", "cy"))):
        xfrm.find(f"{_A}{tag}").attrib.update({keys[0]: str(int(a)), keys[1]: str(int(b))})
    group.rotation = g["rot"]


def build_main_deck(path, png):
    """The deck of the main tests; returns {image_id: (picture, {kept shape name: inside(X, Y)})}."""
    prs = Presentation()
    blank = prs.slide_layouts[6]
    expected = {}

    # Slide 1: scaled picture and every kind of mark.
    slide = prs.slides.add_slide(blank)
    add_picture(slide, png, P1)
    s = slide.shapes
    marks = {}

    def box(x, y, w, h):
        return (*px(x, y), w * 15_000, h * 15_000)

    add(s, MSO_SHAPE.OVAL, "oval", *box(40, 40, 60, 40))
    marks["oval"] = ellipse(*box(40, 40, 60, 40))
    add(s, MSO_SHAPE.RECTANGLE, "rect", *box(150, 30, 50, 35))
    marks["rect"] = rectangle(*box(150, 30, 50, 35))
    add(s, MSO_SHAPE.ROUNDED_RECTANGLE, "roundrect", *box(250, 30, 70, 50)).adjustments[0] = 0.3
    marks["roundrect"] = rounded(*box(250, 30, 70, 50), radius=0.3 * 50 * 15_000)
    pentagon = [px(40, 120), px(110, 130), px(100, 190), px(60, 200), px(30, 160)]
    freeform(s, "freeform", pentagon)
    marks["freeform"] = polygon(pentagon)
    # Open octagon whose last vertex stops 3.7 px (3.7 % of its diagonal) short of the first one.
    loop = [px(180 + 35 * math.cos(math.radians(a)), 160 + 35 * math.sin(math.radians(a)))
            for a in (0, 45, 90, 135, 180, 225, 270, 315, 354)]
    freeform(s, "open_loop", loop, close=False)
    marks["open_loop"] = polygon(loop)
    freeform(s, "u_shape", [px(200, 230), px(200, 280), px(250, 280), px(250, 230)], close=False)
    s.add_connector(MSO_CONNECTOR.STRAIGHT, *map(Emu, map(int, px(10, 10) + px(100, 60)))).name = "line"
    add(s, MSO_SHAPE.OVAL, "rotated_oval", *box(270, 120, 80, 30), rot=30.0)
    marks["rotated_oval"] = ellipse(*box(270, 120, 80, 30), rot=30.0)
    add(s, MSO_SHAPE.RECTANGLE, "rotated_rect", *box(300, 200, 60, 25), rot=-45.0)
    marks["rotated_rect"] = rectangle(*box(300, 200, 60, 25), rot=-45.0)
    triangle = [px(220, 200), px(270, 200), px(220, 280)]
    freeform(s, "flipped_triangle", triangle).element.find(f"./*/{_A}xfrm").set("flipH", "1")
    mirror_x = (px(220, 0)[0] + px(270, 0)[0])
    marks["flipped_triangle"] = polygon([(mirror_x - x, y) for x, y in triangle])
    add(s, MSO_SHAPE.OVAL, "partly_outside", *box(370, 230, 60, 40))
    marks["partly_outside"] = ellipse(*box(370, 230, 60, 40))
    add(s, MSO_SHAPE.OVAL, "outside", *box(420, 20, 40, 40))
    add(s, MSO_SHAPE.OVAL, "tiny", *box(20, 260, 6, 6))
    s.add_textbox(*map(Emu, map(int, box(300, 5, 60, 20)))).text = "PC"

    outer = s.add_group_shape()
    add(outer.shapes, MSO_SHAPE.OVAL, "g_oval", 10_000, 20_000, 100_000, 100_000)
    inner = outer.shapes.add_group_shape()
    add(inner.shapes, MSO_SHAPE.RECTANGLE, "g_rect", 5_000, 5_000, 30_000, 20_000, rot=20.0)
    set_group_xfrm(inner, INNER)
    set_group_xfrm(outer, OUTER)
    marks["g_oval"] = in_group(OUTER, ellipse(10_000, 20_000, 100_000, 100_000))
    marks["g_rect"] = in_group(OUTER, in_group(INNER, rectangle(5_000, 5_000, 30_000, 20_000, rot=20.0)))
    expected["deck_s1"] = (P1, marks)

    # Slide 2: cropped picture.
    slide = prs.slides.add_slide(blank)
    add_picture(slide, png, P2)
    add(slide.shapes, MSO_SHAPE.OVAL, "c_oval", 2_500_000, 1_500_000, 1_200_000, 800_000)
    add(slide.shapes, MSO_SHAPE.RECTANGLE, "c_rect", 4_500_000, 3_000_000, 1_000_000, 600_000, rot=15.0)
    add_custom(slide.shapes, "curvy", 2_300_000, 3_200_000, 2_000_000, 1_200_000, CURVY_PATH)
    curvy = [outline * [2_000_000 / 200, 1_200_000 / 100] + [2_300_000, 3_200_000] for outline in curvy_outlines()]
    add_custom(slide.shapes, "formula", 5_000_000, 1_500_000, 900_000, 900_000,
               '<a:path><a:moveTo><a:pt x="0" y="0"/></a:moveTo><a:lnTo><a:pt x="w" y="h"/></a:lnTo>'
               '<a:lnTo><a:pt x="0" y="h"/></a:lnTo><a:close/></a:path>')
    add(slide.shapes, MSO_SHAPE.CLOUD, "cloud", 5_500_000, 3_800_000, 900_000, 900_000)
    hidden = add(slide.shapes, MSO_SHAPE.OVAL, "hidden", 3_000_000, 2_000_000, 900_000, 900_000)
    hidden.element.find(".//{*}cNvPr").set("hidden", "1")
    expected["deck_s2"] = (P2, {"c_oval": ellipse(2_500_000, 1_500_000, 1_200_000, 800_000),
                                "c_rect": rectangle(4_500_000, 3_000_000, 1_000_000, 600_000, rot=15.0),
                                "curvy": polygon(*curvy)})

    # Slide 3: a title slide, no picture.
    prs.slides.add_slide(prs.slide_layouts[0]).shapes.title.text = "MiMM"

    # Slide 4: two pictures; "ab_oval" overlaps A a little and B more, "ba_oval" the other way round.
    slide = prs.slides.add_slide(blank)
    add_picture(slide, png, PA)
    add_picture(slide, png, PB)
    add(slide.shapes, MSO_SHAPE.OVAL, "a_oval", 1_000_000, 2_000_000, 800_000, 600_000)
    add(slide.shapes, MSO_SHAPE.RECTANGLE, "b_rect", 6_000_000, 3_000_000, 1_000_000, 500_000)
    add(slide.shapes, MSO_SHAPE.OVAL, "ab_oval", 4_300_000, 2_500_000, 1_200_000, 800_000)
    add(slide.shapes, MSO_SHAPE.OVAL, "ba_oval", 3_900_000, 3_500_000, 1_200_000, 800_000)
    expected["deck_s4_p1"] = (PA, {"a_oval": ellipse(1_000_000, 2_000_000, 800_000, 600_000),
                                   "ba_oval": ellipse(3_900_000, 3_500_000, 1_200_000, 800_000)})
    expected["deck_s4_p2"] = (PB, {"b_rect": rectangle(6_000_000, 3_000_000, 1_000_000, 500_000),
                                   "ab_oval": ellipse(4_300_000, 2_500_000, 1_200_000, 800_000)})
    prs.save(str(path))
    return expected


def build_single_deck(path, png):
    """One slide, picture as on slide 1, an oval and a rectangle."""
    prs = Presentation()
    slide = prs.slides.add_slide(prs.slide_layouts[6])
    add_picture(slide, png, P1)
    add(slide.shapes, MSO_SHAPE.OVAL, "oval", *px(40, 40), 900_000, 600_000)
    add(slide.shapes, MSO_SHAPE.RECTANGLE, "rect", *px(200, 100), 750_000, 900_000, rot=25.0)
    prs.save(str(path))
    return {"oval": ellipse(*px(40, 40), 900_000, 600_000), "rect": rectangle(*px(200, 100), 750_000, 900_000, 25.0)}
