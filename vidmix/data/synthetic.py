"""A synthetic temporal task made locally: digits that move or spin, labelled by the arrow of time.

Each class pairs with another that is exactly its time reversal: a video of class "right" read
backwards is a video of class "left" made from the same random draw. The two classes therefore
contain the same frames in the same proportions, so a model that only sees frames as a set (one
that averages per-frame scores, like space-only attention) is at chance, while a model that
compares frames in order can learn the task perfectly.

Tasks (`TASKS`): "direction" (moves left / right, with a random vertical drift), "rotation"
(spins clockwise / counter-clockwise while drifting) and "speed" (travels in a straight line in
any direction, speeding up / slowing down: the distance covered grows as t squared, so a model
must compare the steps between frames; since the direction is uniform, both classes move every
way) and "orbit" (travels around a circle about the frame's centre, counter-clockwise /
clockwise: the sense of a rotation as a motion across the frame, where "rotation" spins the
digit in place) and "first" (two digits, one in each half of the frame, each slides up or down
once while the other stands still: the left one first / the right one first; which of two
events came first). Digits, colours, sizes, speeds and the static noisy background vary per
video.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# class names; class 1 is the time reversal of class 0
TASKS = {
    "direction": ("moving_right", "moving_left"),
    "rotation": ("counterclockwise", "clockwise"),
    "speed": ("speeding_up", "slowing_down"),
    "orbit": ("orbiting_counterclockwise", "orbiting_clockwise"),
    "first": ("left_moves_first", "right_moves_first"),
}
# "first" puts two digits side by side, each drawn at this fraction of `glyph_size`
PAIR_SCALE = 0.7


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    # loading the font is a third of drawing a glyph; a few dozen sizes are ever asked for
    return ImageFont.load_default(size=size)


def _glyph(digit: int, size: int, color, stroke: int = 0) -> Image.Image:
    font = _font(size)
    left, top, right, bottom = font.getbbox(str(digit), stroke_width=stroke)
    pad = size // 4
    side = max(right - left, bottom - top) + 2 * pad
    glyph = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    ImageDraw.Draw(glyph).text(((side - (right - left)) / 2 - left, (side - (bottom - top)) / 2
                                - top), str(digit), font=font, fill=tuple(color) + (255,),
                                stroke_width=stroke, stroke_fill=tuple(color) + (255,))
    return glyph


def make_video(task: str, label: int, seed: int, *, num_frames: int = 16,
               size: int = 64, glyph_size: tuple[float, float] = (0.35, 0.5),
               stroke: int = 0) -> np.ndarray:
    """One video, uint8 (num_frames, size, size, 3). Deterministic in (task, seed); `label` 1 gives
    exactly the frames of label 0 in reverse order. The digit's font size is drawn uniformly from
    `glyph_size` (fractions of the frame); `stroke` thickens its lines by that many pixels on
    each side. For "first", the two digits are drawn at `PAIR_SCALE` times that size, each in its
    half of the frame."""
    if task not in TASKS:
        raise ValueError(f"unknown synthetic task {task!r}; choose from {sorted(TASKS)}")
    if label not in (0, 1):
        raise ValueError(f"label must be 0 or 1 for task {task!r}, got {label}")
    low, high = glyph_size
    if not 0 < low <= high:
        raise ValueError(f"glyph_size must be (low, high) with 0 < low <= high, got {glyph_size}")
    rng = np.random.default_rng(seed)
    draw = _two_digits if task == "first" else _one_digit
    video = _render(*draw(task, rng, num_frames, size, (low, high), stroke))
    return video[::-1].copy() if label == 1 else video


def _one_digit(task, rng, num_frames, size, glyph_size, stroke):
    """(background, sprites) of the one-digit tasks, label 0."""
    low, high = glyph_size
    color = rng.integers(128, 256, size=3)
    glyph = _glyph(int(rng.integers(10)), max(1, int(size * rng.uniform(low, high))), color,
                   stroke)
    side = glyph.width
    _check_fits(side, size, glyph_size, f"a {size}-pixel frame")
    background = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
    free = size - side  # room for the glyph's top-left corner
    t = np.linspace(0.0, 1.0, num_frames)
    if task == "direction":  # travels 40-90% of the free width to the right
        travel = rng.uniform(0.4, 0.9) * free
        x = rng.uniform(0, free - travel) + travel * t
        drift = rng.uniform(-0.3, 0.3) * free
        y = np.clip(rng.uniform(0, free) + drift * (t - 0.5), 0, free)
        angle = np.full(num_frames, rng.uniform(-20, 20))
    elif task == "speed":  # accelerates from rest along a random direction over 60-95% of the room
        heading = rng.uniform(0, 2 * np.pi)
        direction = np.array([np.cos(heading), np.sin(heading)])
        span = rng.uniform(0.6, 0.95) * free * direction
        start = np.where(span >= 0, 0.0, -span) + rng.uniform(0, free - np.abs(span))
        x, y = (start[:, None] + span[:, None] * t[None] ** 2)
        angle = np.full(num_frames, rng.uniform(-20, 20))
    elif task == "orbit":  # 120-270 degrees counter-clockwise (on screen) around the centre
        theta = rng.uniform(0, 2 * np.pi) + np.radians(rng.uniform(120, 270)) * t
        radius = rng.uniform(0.3, 0.5) * free
        x = free / 2 + radius * np.cos(theta)
        y = free / 2 - radius * np.sin(theta)  # image rows grow downwards
        angle = np.full(num_frames, rng.uniform(-20, 20))
    else:  # spins 120-300 degrees counter-clockwise, drifting slowly in a random direction
        angle = rng.uniform(0, 360) + rng.uniform(120, 300) * t
        start = rng.uniform(0.2 * free, 0.8 * free, size=2)
        step = rng.uniform(-0.2, 0.2, size=2) * free
        x = np.clip(start[0] + step[0] * t, 0, free)
        y = np.clip(start[1] + step[1] * t, 0, free)
    return background, [(glyph, x, y, angle)]


def _check_fits(side: int, room: int, glyph_size, where: str):
    if side > room:
        raise ValueError(f"a digit of glyph_size {tuple(glyph_size)} ({side} pixels with its "
                         f"margin) does not fit in {where}; use smaller fractions")


def _render(background: np.ndarray, sprites) -> np.ndarray:
    """(T, H, W, 3): each sprite (glyph, x, y, angle), one value per frame, pasted in turn."""
    frames = []
    rotated = {}  # (sprite, angle) -> the rotated glyph: most sprites keep one angle throughout
    for i in range(len(sprites[0][1])):
        frame = Image.fromarray(background)
        for k, (glyph, x, y, angle) in enumerate(sprites):
            key = (k, float(angle[i]))
            if key not in rotated:
                rotated[key] = glyph.rotate(angle[i], resample=Image.BILINEAR)
            frame.paste(rotated[key], (int(round(x[i])), int(round(y[i]))), rotated[key])
        frames.append(np.asarray(frame))
    return np.stack(frames)


def _two_digits(task, rng, num_frames, size, glyph_size, stroke):
    """(background, sprites) of "first", label 0: two digits, one per half of the frame. The left
    one slides up or down by 40-90% of the room while the right one stands still, until a switch
    at 35-65% of the video; then the right one slides while the left stands still."""
    low, high = glyph_size
    glyphs = [_glyph(int(rng.integers(10)),
                     max(1, int(size * PAIR_SCALE * rng.uniform(low, high))),
                     rng.integers(128, 256, size=3), stroke) for _ in range(2)]
    half = size // 2
    for glyph in glyphs:
        _check_fits(glyph.width, half, glyph_size, f"half of a {size}-pixel frame")
    background = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
    t = np.linspace(0.0, 1.0, num_frames)
    switch = rng.uniform(0.35, 0.65)
    # how far along its slide each digit is: the left over [0, switch], the right after
    progress = [np.clip(t / switch, 0, 1), np.clip((t - switch) / (1 - switch), 0, 1)]
    sprites = []
    for i, glyph in enumerate(glyphs):
        free = size - glyph.width
        travel = rng.uniform(0.4, 0.9) * free * rng.choice([-1.0, 1.0])
        y = rng.uniform(max(0, -travel), min(free, free - travel)) + travel * progress[i]
        x = np.full(num_frames, i * half + rng.uniform(0, half - glyph.width))
        sprites.append((glyph, x, y, np.full(num_frames, rng.uniform(-20, 20))))
    return background, sprites
