"""Drawing one synthetic photo of a person: 384x512, face at a varying place and scale.

The face is drawn with the structure a real face detector looks for (eyes in shaded sockets,
brows, nose, mouth, a rounded lit face under a hairline), so that MTCNN, as ``maskcls crop`` runs
it, finds over 90% of faces in every mask state, as it does on real photos
(``bench/detection.py``). Returns the image and the true face box.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from maskcls.labels import Mask
from maskcls.synth.people import MaskStyle, Person, rgb

WIDTH, HEIGHT = 384, 512
Box = tuple[float, float, float, float]
MASK_TOP = 0.06  # top edge of a worn mask (on the nose bridge), below the face centre, in face heights
MASK_WIDTH = 1.1
EYE_WHITE = (165, 150, 140)
SOCKET_DEPTH = 0.6  # how much darker the eye sockets are (bench/detection.py: deeper is found more often)
LIGHT_STEPS = 4096  # the light map's grid (see shade_face)
HAIRLINE = 0.4  # how far above the face centre the hairline is, in face heights
# the age lines a face gets from its wrinkles (0..1): each drawn from a threshold on, darker with more wrinkles
SMILE_LINES_FROM = 0.15  # nose to mouth corners (under a worn mask)
CROWS_FEET_FROM = 0.25
EYE_BAGS_FROM = 0.35
FOREHEAD_LINES_PER_WRINKLE = 3.5  # int(wrinkles x this) lines across the forehead


def draw_photo(
    person: Person, mask: Mask, mask_style: MaskStyle | None, rng: np.random.Generator, difficulty: float
) -> tuple[Image.Image, Box]:
    image = Image.new("RGB", (WIDTH, HEIGHT))
    canvas = ImageDraw.Draw(image)
    scale = rng.uniform(0.85, 1.45)
    face_w = person.face_width * scale
    face_h = face_w * person.face_aspect
    cx = WIDTH / 2 + rng.normal(0, 22)
    cy = rng.uniform(0.32, 0.48) * HEIGHT
    draw_background(canvas, person, rng)
    draw_body(canvas, person, cx, cy, face_w, face_h)
    draw_hair_back(canvas, person, cx, cy, face_w, face_h)
    draw_face(canvas, person, cx, cy, face_w, face_h)
    draw_hair_top(canvas, person, cx, cy, face_w, face_h)
    draw_features(canvas, person, cx, cy, face_w, face_h)
    if mask != Mask.NOT_WEAR and mask_style is not None:
        # A mask follows the jaw: drawn on a copy, pasted through a face-shaped stencil.
        layer = image.copy()
        draw_mask(ImageDraw.Draw(layer), mask_style, mask, cx, cy, face_w, face_h, rng)
        stencil = Image.new("L", image.size, 0)
        ImageDraw.Draw(stencil).polygon(face_outline(person, cx, cy, face_w, face_h * 1.02), fill=255)
        image.paste(layer, (0, 0), stencil)
    image = shade_face(image, person, cx, cy, face_w, face_h)
    box: Box = (cx - face_w / 2, cy - face_h / 2, cx + face_w / 2, cy + face_h / 2)
    angle = rng.normal(0, 4)
    # The camera part runs at half resolution (4x less work); scaling back up softens the
    # drawing's hard edges the way a real lens and sensor do.
    small = image.reduce(2).rotate(angle, Image.BILINEAR, center=(cx / 2, cy / 2), fillcolor=person.background[1])
    small = photographic_effects(small, rng, difficulty)
    return small.resize((WIDTH, HEIGHT), Image.BILINEAR), rotated_box(box, angle, cx, cy)


def draw_background(canvas: ImageDraw.ImageDraw, person: Person, rng: np.random.Generator) -> None:
    top, bottom = (np.array(c, dtype=float) for c in person.background)
    shift = rng.normal(0, 10, 3)
    for y in range(0, HEIGHT, 8):
        colour = top + (bottom - top) * (y / HEIGHT) + shift
        canvas.rectangle((0, y, WIDTH, y + 8), fill=rgb(colour))
    for _ in range(rng.integers(0, 4)):
        x0, y0 = rng.uniform(-50, WIDTH), rng.uniform(-50, HEIGHT * 0.7)
        w, h = rng.uniform(30, 160, 2)
        canvas.rectangle((x0, y0, x0 + w, y0 + h), fill=rgb(top * 0.8 + rng.uniform(0, 60, 3)))


def draw_body(canvas, person: Person, cx, cy, face_w, face_h) -> None:
    neck_w = face_w * 0.42
    canvas.rectangle((cx - neck_w / 2, cy, cx + neck_w / 2, cy + face_h * 0.95), fill=shade(person.skin, 0.86))
    shoulders_top = cy + face_h * 0.78
    canvas.ellipse(
        (cx - face_w * 1.7, shoulders_top, cx + face_w * 1.7, shoulders_top + face_h * 2.2), fill=person.clothes
    )
    canvas.polygon(
        [(cx - neck_w * 0.6, shoulders_top), (cx + neck_w * 0.6, shoulders_top), (cx, shoulders_top + face_h * 0.3)],
        fill=shade(person.skin, 0.86),
    )


def draw_hair_back(canvas, person: Person, cx, cy, face_w, face_h) -> None:
    if person.hair_length < 0.4:
        return
    bottom = cy + face_h * (0.1 + 0.9 * person.hair_length)
    width = face_w * (1.16 + 0.12 * person.hair_length)
    canvas.rounded_rectangle(
        (cx - width / 2, cy - face_h * 0.45, cx + width / 2, bottom), radius=face_w * 0.4, fill=person.hair
    )


def face_outline(person: Person, cx, cy, face_w, face_h) -> list[tuple[float, float]]:
    """An egg shape: round forehead, narrowing to a chin of width ``person.jaw``."""
    points = []
    for step in range(48):
        t = 2 * math.pi * step / 48
        x, y = math.cos(t), math.sin(t)
        if y > 0:  # lower half narrows towards the chin
            x *= 1 - (1 - person.jaw) * y**1.5
        points.append((cx + x * face_w / 2, cy + y * face_h / 2))
    return points


def draw_face(canvas, person: Person, cx, cy, face_w, face_h) -> None:
    ear_y = cy - face_h * 0.02
    for side in (-1, 1):
        ex = cx + side * face_w * 0.5
        canvas.ellipse(
            (ex - face_w * 0.08, ear_y - face_h * 0.1, ex + face_w * 0.08, ear_y + face_h * 0.1),
            fill=shade(person.skin, 0.9),
        )
    for layer in range(6):  # concentric layers: darker at the edges, lit towards the middle
        shrink = 1 - 0.09 * layer
        outline = face_outline(person, cx, cy - face_h * 0.02 * layer, face_w * shrink, face_h * shrink)
        canvas.polygon(outline, fill=shade(person.skin, 0.8 + 0.045 * layer))


def shade_face(image: Image.Image, person: Person, cx, cy, face_w, face_h) -> Image.Image:
    """Light on a rounded face: darker towards its edges and in the eye sockets, a lit nose
    bridge, a shadow under the nose. Multiplies the pixels inside the face outline (skin, hair
    over the forehead, a mask) by a smooth map; real detectors look for exactly this relief."""
    x0, y0 = max(0, int(cx - face_w * 0.62)), max(0, int(cy - face_h * 0.6))
    x1, y1 = min(WIDTH, int(cx + face_w * 0.62)), min(HEIGHT, int(cy + face_h * 0.6))
    u = (np.arange(x0, x1) - cx) / (face_w / 2)  # -1..1 across the face
    v = (np.arange(y0, y1)[:, None] - cy) / (face_h / 2)  # -1..1 down it

    def blob(centre_u, width_u, centre_v, height_v):  # a separable Gaussian: two 1-D factors
        return np.exp(-(((v - centre_v) / height_v) ** 2)) * np.exp(-(((u - centre_u) / width_u) ** 2))

    light = 0.62 + 0.48 * np.sqrt(np.clip(1 - (u**2 + (v * 0.9) ** 2), 0, 1))
    for side in (-1, 1):  # eye sockets
        light -= SOCKET_DEPTH * blob(side * 2 * person.eye_spacing, 0.32, -0.08, 0.13)
    light += 0.08 * blob(0, 0.1, 0.05, 0.25)  # nose bridge
    light -= 0.12 * blob(0, 0.16, 0.33, 0.05)  # under the nose
    # On a grid of 1/4096: exp and sqrt may differ in the last bit between CPUs (SIMD paths), the
    # rounded map does not, and pixel x map is then exact: same seed, same bytes on any machine.
    light = np.round(light * LIGHT_STEPS) / LIGHT_STEPS
    region = np.asarray(image.crop((x0, y0, x1, y1)), dtype=np.float64) * light[..., None]
    stencil = Image.new("L", (x1 - x0, y1 - y0), 0)
    outline = [(x - x0, y - y0) for x, y in face_outline(person, cx, cy, face_w, face_h)]
    ImageDraw.Draw(stencil).polygon(outline, fill=255)
    image.paste(Image.fromarray(np.clip(region, 0, 255).astype(np.uint8)), (x0, y0), stencil)
    return image


def draw_hair_top(canvas, person: Person, cx, cy, face_w, face_h) -> None:
    """The crown: a dome over the head, its hairline arched up in the middle and down at the temples."""
    top = cy - face_h * 0.6
    middle = cy - face_h * (HAIRLINE - 0.08 * person.fringe)
    temple = cy - face_h * 0.2
    half = face_w * 0.55

    def hairline(x: float) -> float:  # x: -1 (left temple) .. 1 (right temple)
        return middle + (temple - middle) * abs(x) ** 2.5

    points = []
    for step in range(17):  # the dome, from the left temple over the top to the right temple
        t = math.pi * step / 16
        points.append((cx - half * math.cos(t), temple - (temple - top) * math.sin(t)))
    for step in range(17):  # the hairline, back from right to left
        x = 1 - 2 * step / 16
        points.append((cx + x * half * 0.92, hairline(x)))
    canvas.polygon(points, fill=person.hair)
    strand = shade(person.hair, 0.7)
    for k in range(-3, 4):  # combed strands from the crown down to the hairline
        x = k / 3.5
        crown = (cx + x * half * 0.5, top + face_h * 0.03)
        canvas.line((crown, (cx + x * half * 0.9, hairline(x))), fill=strand, width=max(1, round(face_w / 45)))


def draw_features(canvas, person: Person, cx, cy, face_w, face_h) -> None:
    eye_y = cy - face_h * 0.04
    eye_dx = face_w * person.eye_spacing
    eye_w, eye_h = face_w * 0.17, face_w * 0.07
    dark = (35, 28, 25)
    wrinkle = shade(person.skin, 1 - 0.45 * person.wrinkles)
    for side in (-1, 1):
        ex = cx + side * eye_dx
        canvas.ellipse((ex - eye_w / 2, eye_y - eye_h / 2, ex + eye_w / 2, eye_y + eye_h / 2), fill=EYE_WHITE)
        iris = eye_h * 0.62
        canvas.ellipse((ex - iris, eye_y - iris, ex + iris, eye_y + iris), fill=(50, 36, 28))
        canvas.ellipse((ex - iris / 2.5, eye_y - iris / 2.5, ex + iris / 2.5, eye_y + iris / 2.5), fill=(10, 8, 8))
        canvas.arc(
            (ex - eye_w / 2, eye_y - eye_h * 0.8, ex + eye_w / 2, eye_y + eye_h * 0.6),
            200,
            340,
            fill=dark,
            width=max(1, int(face_w / 60)),
        )
        brow_y = eye_y - face_h * 0.1
        canvas.line(
            (ex - side * eye_w * 0.55, brow_y + 2, ex + side * eye_w * 0.6, brow_y - 1),
            fill=shade(person.hair, 0.8),
            width=max(1, round(person.brow_thickness * face_w / 62)),
        )
        if person.wrinkles > CROWS_FEET_FROM:
            corner = ex + side * eye_w * 0.62
            for k in (-1, 0, 1):
                canvas.line((corner, eye_y + k * 3, corner + side * face_w * 0.06, eye_y + k * 6), fill=wrinkle)
        if person.wrinkles > EYE_BAGS_FROM:
            bag = (ex - eye_w / 2, eye_y, ex + eye_w / 2, eye_y + eye_h * 1.6)
            canvas.arc(bag, 20, 160, fill=wrinkle, width=max(1, round(face_w / 60)))
    nose_tip = cy + face_h * 0.14
    canvas.line(
        (cx - face_w * 0.03, eye_y + eye_h, cx - face_w * 0.05, nose_tip),
        fill=shade(person.skin, 0.78),
        width=max(1, int(face_w / 50)),
    )
    for side in (-1, 1):
        nx = cx + side * face_w * 0.05
        canvas.ellipse(
            (nx - face_w * 0.025, nose_tip - face_w * 0.012, nx + face_w * 0.025, nose_tip + face_w * 0.018),
            fill=shade(person.skin, 0.55),
        )
    mouth_y = cy + face_h * 0.29
    mouth_w = face_w * 0.3
    canvas.ellipse(
        (cx - mouth_w / 2, mouth_y - face_w * 0.035, cx + mouth_w / 2, mouth_y + face_w * 0.045), fill=person.lip_colour
    )
    canvas.line(
        (cx - mouth_w / 2, mouth_y, cx + mouth_w / 2, mouth_y),
        fill=shade(person.lip_colour, 0.5),
        width=max(1, int(face_w / 70)),
    )
    draw_age_lines(canvas, person, cx, cy, face_w, face_h, wrinkle, nose_tip, mouth_y)
    if person.stubble > 0:
        draw_stubble(canvas, person, cx, cy, face_w, face_h)


def draw_age_lines(canvas, person: Person, cx, cy, face_w, face_h, colour, nose_tip, mouth_y) -> None:
    lines = int(person.wrinkles * FOREHEAD_LINES_PER_WRINKLE)
    width = max(1, round(face_w / 100 * (0.6 + person.wrinkles)))
    forehead = shade(person.skin, 1 - 0.2 * person.wrinkles)  # fainter: dark ones read as extra brows
    for k in range(lines):  # forehead lines, between the brows and the hairline
        y = cy - face_h * (0.18 + 0.03 * k)
        canvas.arc((cx - face_w * 0.28, y - 6, cx + face_w * 0.28, y + 6), 200, 340, fill=forehead, width=width)
    if person.wrinkles > SMILE_LINES_FROM:
        for side in (-1, 1):
            canvas.line(
                (cx + side * face_w * 0.1, nose_tip, cx + side * face_w * 0.19, mouth_y + face_h * 0.03),
                fill=colour,
                width=width,
            )


def draw_stubble(canvas, person: Person, cx, cy, face_w, face_h) -> None:
    colour = shade(person.skin, 1 - 0.3 * person.stubble)
    canvas.chord((cx - face_w * 0.38, cy + face_h * 0.05, cx + face_w * 0.38, cy + face_h * 0.5), 0, 180, fill=colour)
    canvas.ellipse(
        (cx - face_w * 0.17, cy + face_h * 0.25, cx + face_w * 0.17, cy + face_h * 0.34), fill=person.lip_colour
    )


def draw_mask(canvas, style: MaskStyle, mask: Mask, cx, cy, face_w, face_h, rng: np.random.Generator) -> None:
    if mask == Mask.WEAR:
        top = cy + face_h * rng.uniform(MASK_TOP, MASK_TOP + 0.05)
    else:  # below the nose, or pulled down onto the chin
        top = cy + face_h * (rng.uniform(0.18, 0.24) if rng.random() < 0.75 else rng.uniform(0.3, 0.34))
    bottom = min(cy + face_h * 0.54, top + face_h * style.height)
    half = face_w * 0.5 * MASK_WIDTH
    outline = [
        (cx - half * 0.92, top + face_h * 0.05),
        (cx, top - face_h * 0.03),
        (cx + half * 0.92, top + face_h * 0.05),
        (cx + half * 0.8, bottom - face_h * 0.1),
        (cx, bottom),
        (cx - half * 0.8, bottom - face_h * 0.1),
    ]
    canvas.polygon(outline, fill=shade(style.colour, 0.82))
    for layer in range(1, 4):  # soft shading: the mask bulges towards the camera
        shrink = 1 - 0.12 * layer
        inner = [(cx + (x - cx) * shrink, top + (y - top) * shrink + 0.05 * layer * (bottom - top)) for x, y in outline]
        canvas.polygon(inner, fill=shade(style.colour, 0.82 + 0.06 * layer))
    strap = shade(style.colour, 0.85)
    for side in (-1, 1):
        canvas.line(
            (cx + side * half * 0.92, top + face_h * 0.06, cx + side * half * 1.02, cy - face_h * 0.05),
            fill=strap,
            width=2,
        )
    draw_mask_pattern(canvas, style, cx, top, bottom, half)


def draw_mask_pattern(canvas, style: MaskStyle, cx, top, bottom, half) -> None:
    height = bottom - top
    if style.pattern == "stripes":
        for k in range(1, 5):
            y = top + height * k / 5
            canvas.line((cx - half * 0.8, y, cx + half * 0.8, y), fill=style.accent, width=3)
    elif style.pattern == "dots":
        for k in range(12):
            x = cx - half * 0.6 + (k % 4) * half * 0.4
            y = top + height * (0.25 + 0.22 * (k // 4))
            canvas.ellipse((x - 3, y - 3, x + 3, y + 3), fill=style.accent)
    elif style.pattern == "pleats":
        for k in (0.3, 0.5, 0.7):
            y = top + height * k
            canvas.line((cx - half * 0.85, y, cx + half * 0.85, y + 2), fill=shade(style.colour, 0.8), width=2)
    elif style.pattern == "kf94":
        canvas.line((cx, top, cx, bottom), fill=shade(style.colour, 0.75), width=2)


def photographic_effects(image: Image.Image, rng: np.random.Generator, difficulty: float) -> Image.Image:
    spread = 0.15 + 0.3 * difficulty
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(1 - spread, 1 + spread * 0.7))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(1 - spread * 0.7, 1 + spread * 0.5))
    if rng.random() < 0.3 + 0.5 * difficulty:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.6 + 0.8 * difficulty)))
    pixels = np.asarray(image, dtype=np.float32)
    cast = rng.normal(0, 6 * (0.5 + difficulty), 3).astype(np.float32)
    noise = rng.normal(0, 2 + 4 * difficulty, (image.height, image.width, 1)).astype(np.float32)
    return Image.fromarray(np.clip(pixels + cast + noise, 0, 255).astype(np.uint8))


def rotated_box(box: Box, angle_deg: float, cx: float, cy: float) -> Box:
    """Axis-aligned box around ``box`` rotated by PIL's ``rotate(angle)`` about (cx, cy)."""
    theta = math.radians(angle_deg)
    cos, sin = math.cos(theta), math.sin(theta)
    xs, ys = [], []
    for x, y in ((box[0], box[1]), (box[2], box[1]), (box[0], box[3]), (box[2], box[3])):
        dx, dy = x - cx, y - cy
        xs.append(cx + dx * cos + dy * sin)
        ys.append(cy - dx * sin + dy * cos)
    return (
        max(0.0, min(xs)),
        max(0.0, min(ys)),
        min(float(WIDTH), max(xs)),
        min(float(HEIGHT), max(ys)),
    )


def shade(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return rgb(np.array(colour, dtype=float) * factor)
