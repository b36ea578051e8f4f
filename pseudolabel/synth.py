"""Synthetic ball videos with exact ground truth, for demos and end-to-end tests.

Each video is one *venue* (grass pitch, clay court, blue hard court, indoor wood, beach sand, night
pitch) with a panning camera, a shaded and textured ball (soccer, tennis, basketball, volleyball) in
parabolic, bouncing flight with motion blur, a player-like occluder passing in front, distractors
(round signs, a ring, a static lens blemish, a scoreboard overlay with text) and stretches with no
ball at all (negatives).

Ground truth is the ball's *visible* extent in ``xyxy`` float pixels (pixel ``k`` spans ``[k, k+1]``):
the disc clipped to the frame and, when an occluder covers one side, shrunk to the uncovered part.
A frame gets no box when the ball is out of frame, more than 60 % of its disc is covered, or less
than 2 px of it remains visible on either axis. By default motion blur does not widen the box: a box is
where the ball *is* at the frame's mid-exposure; ``gt_extent="swept"`` boxes the streak the blur leaves
instead (the disc swept over the exposure), the way people box a blurred ball by eye.

Run as ``python -m pseudolabel.synth --out DIR`` to write a suite (``DIR/<video_id>.mp4``,
``DIR/ground_truth.json`` in our COCO format, ``DIR/suite.json``).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .files import atomic_write_json
from .records import Box, Dataset, Frame

VENUES = ("grass", "clay", "hard", "wood", "sand", "night")
BALL_KINDS = ("soccer", "tennis", "basketball", "volleyball")
# Which balls are played where (the first is the most likely).
_VENUE_BALLS = {
    "grass": ("soccer",), "clay": ("tennis",), "hard": ("tennis", "basketball"),
    "wood": ("basketball", "volleyball"), "sand": ("volleyball", "soccer"), "night": ("soccer", "tennis"),
}
SUITE_VERSION = 1
MAX_OCCLUDED = 0.6
GT_EXTENTS = ("disc", "swept")  # what a ground-truth box covers: see render_video
MIN_VISIBLE_PX = 2.0
_SS = 4  # supersampling of ball sprites (anti-aliasing)

BoxT = tuple[float, float, float, float]


# --------------------------------------------------------------------------------------------- noise
def _smooth_noise(rng: np.random.Generator, h: int, w: int, *, cell: float) -> np.ndarray:
    """(h, w) float32 smooth noise in about [-1, 1]: a coarse random grid upsampled bicubically."""
    import cv2

    gh, gw = max(2, int(np.ceil(h / cell)) + 1), max(2, int(np.ceil(w / cell)) + 1)
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    return np.clip(cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC), -2.5, 2.5) / 1.5


def _fbm(rng: np.random.Generator, h: int, w: int, *, cells: Sequence[float]) -> np.ndarray:
    out = np.zeros((h, w), np.float32)
    for i, c in enumerate(cells):
        out += _smooth_noise(rng, h, w, cell=c) / (1.6 ** i)
    return out / sum(1 / 1.6 ** i for i in range(len(cells)))


def _tint(base_rgb, shade: np.ndarray) -> np.ndarray:
    """(h, w, 3) float32 image: a colour modulated by a (h, w) multiplicative shade."""
    return np.asarray(base_rgb, np.float32)[None, None, :] * shade[..., None]


def _crowd(rng: np.random.Generator, h: int, w: int, *, gain: float = 1.0) -> np.ndarray:
    """(h, w, 3) blotchy many-coloured band: spectators seen from afar."""
    import cv2

    blob = rng.uniform(30, 200, (max(1, h // 5), max(1, w // 4), 3)).astype(np.float32)
    img = cv2.resize(blob, (w, h), interpolation=cv2.INTER_NEAREST)
    return np.clip(cv2.GaussianBlur(img, (3, 3), 0) * gain, 0, 255)


# ---------------------------------------------------------------------------------------- backgrounds
@dataclass
class _Scene:
    world: np.ndarray          # (H, Ww, 3) float32 RGB background, wider than the frame (pan)
    ground_y: float            # screen row where balls bounce
    light: np.ndarray          # (3,) unit vector towards the light (x right, y down, z to camera)
    gain: float                # global brightness applied after compositing
    noise_sigma: float         # sensor noise (grey levels)


def _court_lines(img: np.ndarray, rows: Sequence[int], cols: Sequence[int], *, colour, thickness: int) -> None:
    import cv2

    h, w = img.shape[:2]
    for r in rows:
        cv2.line(img, (0, int(r)), (w - 1, int(r)), colour, thickness, cv2.LINE_AA)
    for c in cols:
        cv2.line(img, (int(c), int(rows[0]) if rows else 0), (int(c), h - 1), colour, thickness, cv2.LINE_AA)


def _make_scene(rng: np.random.Generator, venue: str, *, width: int, height: int, world_w: int) -> _Scene:
    import cv2

    h, w = height, world_w
    horizon = int(height * rng.uniform(0.22, 0.32))
    ground_y = float(height * rng.uniform(0.80, 0.90))
    grain = _fbm(rng, h, w, cells=(40, 9, 3))
    fine = rng.standard_normal((h, w)).astype(np.float32)
    s = max(1, round(height / 360))  # line thickness scale
    light = np.array([rng.uniform(-0.6, 0.6), -rng.uniform(0.5, 0.9), rng.uniform(0.5, 0.9)])
    gain, noise = rng.uniform(0.9, 1.08), rng.uniform(1.5, 3.5)
    if venue in ("grass", "night"):
        stripe = ((np.arange(w) // int(rng.uniform(50, 90) * s)) % 2).astype(np.float32)[None, :]
        shade = 0.85 + 0.08 * stripe + 0.07 * grain + 0.05 * fine
        img = _tint((70, 140, 55) if venue == "grass" else (55, 120, 60), shade)
        _court_lines(img, [horizon + int(0.08 * h)], [int(w * 0.5)], colour=(235, 235, 235), thickness=2 * s)
        cv2.circle(img, (int(w * 0.5), int(h * 0.62)), int(h * 0.22), (235, 235, 235), 2 * s, cv2.LINE_AA)
        img[:horizon] = _crowd(rng, horizon, w, gain=0.9 if venue == "grass" else 0.5)
        if venue == "night":
            # a dim pitch; the floodlit ball and players keep their brightness
            img *= rng.uniform(0.45, 0.6)
            noise = rng.uniform(4.0, 6.0)
            for x in np.linspace(w * 0.1, w * 0.9, 5):  # floodlights: bright round non-balls
                cv2.circle(img, (int(x + rng.uniform(-20, 20)), int(horizon * 0.3)), int(rng.uniform(6, 11) * s),
                           (255, 255, 235), -1, cv2.LINE_AA)
    elif venue == "clay":
        shade = 0.9 + 0.08 * grain + 0.06 * fine
        img = _tint((190, 100, 60), shade)
        _court_lines(img, [horizon + int(0.1 * h), int(h * 0.55)], [int(w * 0.3), int(w * 0.7)],
                     colour=(240, 235, 225), thickness=3 * s)
        img[:horizon] = _tint((40, 90, 60), 0.9 + 0.1 * grain[:horizon])
    elif venue == "hard":
        shade = 0.92 + 0.05 * grain + 0.04 * fine
        img = _tint((50, 95, 160), shade)
        out = (np.arange(w) < w * 0.15) | (np.arange(w) > w * 0.85)
        img[:, out] = _tint((60, 130, 80), shade[:, out])
        _court_lines(img, [horizon + int(0.1 * h), int(h * 0.6)], [int(w * 0.15), int(w * 0.85), int(w * 0.5)],
                     colour=(245, 245, 245), thickness=3 * s)
        img[:horizon] = _tint((25, 40, 80), 0.9 + 0.1 * grain[:horizon])
    elif venue == "wood":
        plank = (np.arange(h) // int(rng.uniform(10, 16) * s)).astype(np.float32)
        plank_tone = (rng.uniform(0.85, 1.1, int(plank.max()) + 1)[plank.astype(int)]).astype(np.float32)[:, None]
        streak = _smooth_noise(rng, h, w // 6 + 1, cell=3)
        streak = cv2.resize(streak, (w, h), interpolation=cv2.INTER_LINEAR)
        shade = plank_tone * (0.9 + 0.06 * streak + 0.04 * grain + 0.03 * fine)
        img = _tint((200, 150, 95), shade)
        key = (slice(int(h * 0.45), h), slice(int(w * 0.42), int(w * 0.62)))
        img[key] = _tint((170, 60, 55), shade[key])
        _court_lines(img, [horizon + int(0.06 * h)], [int(w * 0.42), int(w * 0.62)], colour=(245, 245, 240),
                     thickness=2 * s)
        img[:horizon] = _crowd(rng, horizon, w, gain=0.7)
    elif venue == "sand":
        shade = 0.9 + 0.06 * grain + 0.1 * fine
        img = _tint((220, 195, 150), shade)
        for _ in range(int(w * h / 4000)):  # footprints: dark soft dents
            c = (int(rng.uniform(0, w)), int(rng.uniform(horizon, h)))
            cv2.ellipse(img, c, (int(rng.uniform(3, 7) * s), int(rng.uniform(2, 4) * s)), 0, 0, 360,
                        (185, 160, 120), -1, cv2.LINE_AA)
        sky = np.linspace(0.8, 1.0, horizon, dtype=np.float32)[:, None] * np.ones((1, w), np.float32)
        img[:horizon] = _tint((120, 170, 230), sky)
        net_y = int(horizon + 0.25 * h)  # a net band across the court
        img[net_y - 2 * s:net_y + 2 * s] = (240, 240, 240)
    else:
        raise ValueError(f"unknown venue {venue!r}; choose from {VENUES}")
    img[horizon - 6 * s:horizon] = _tint(rng.uniform(60, 220, 3), np.ones((6 * s, w), np.float32))  # ad board
    return _Scene(world=np.clip(img, 0, 255).astype(np.float32), ground_y=ground_y,
                  light=light / np.linalg.norm(light), gain=gain, noise_sigma=noise)


# ---------------------------------------------------------------------------------------------- balls
_ICO = np.array([[0, 1, p] for p in (1.618, -1.618)] + [[0, -1, p] for p in (1.618, -1.618)]
                + [[1, p, 0] for p in (1.618, -1.618)] + [[-1, p, 0] for p in (1.618, -1.618)]
                + [[p, 0, 1] for p in (1.618, -1.618)] + [[p, 0, -1] for p in (1.618, -1.618)], np.float32)
_ICO /= np.linalg.norm(_ICO, axis=1, keepdims=True)


def ball_albedo(kind: str, m: np.ndarray) -> np.ndarray:
    """Surface colour of a ball.

    Parameters
    ----------
    kind : str
        One of :data:`BALL_KINDS`.
    m : (N, 3) float array
        Unit points on the ball's surface in the ball's own (rotating) frame.

    Returns
    -------
    (N, 3) float32 RGB in [0, 255].
    """
    x, y, z = m[:, 0], m[:, 1], m[:, 2]
    n = len(m)
    if kind == "soccer":
        near = (m @ _ICO.T).max(axis=1)  # pentagons around the 12 icosahedron vertices
        col = np.where((near > 0.972)[:, None], [[35, 35, 40]], [[245, 245, 245]])
        seam = np.abs(near - 0.84) < 0.008
        col = np.where(seam[:, None], [[120, 120, 120]], col)
    elif kind == "tennis":
        fuzz = 1.0 + 0.07 * np.sin(40 * x + 13 * y) * np.cos(37 * z)
        col = np.array([[205, 225, 50]]) * fuzz[:, None]
        seam = np.abs(z - 0.75 * (x * x - y * y)) < 0.07
        col = np.where(seam[:, None], [[245, 245, 235]], col)
    elif kind == "basketball":
        pebble = 1.0 + 0.06 * np.sin(60 * x) * np.sin(60 * y + 20 * z)
        col = np.array([[225, 105, 35]]) * pebble[:, None]
        lines = (np.abs(x) < 0.045) | (np.abs(z) < 0.045) | (np.abs(np.abs(y) - 0.65 - 0.25 * x * x) < 0.045)
        col = np.where(lines[:, None], [[30, 20, 15]], col)
    elif kind == "volleyball":
        ax = np.abs(m).argmax(axis=1)
        second = np.take_along_axis(m, ((ax + 1) % 3)[:, None], axis=1)[:, 0]
        band = np.clip(((second + 1) * 1.5).astype(int), 0, 2)
        palette = np.array([[245, 245, 240], [35, 80, 185], [250, 205, 40]])
        col = palette[(band + ax) % 3]
        seam = np.abs(np.abs(second) - 1 / 3) < 0.02
        col = np.where(seam[:, None], [[90, 90, 90]], col)
    else:
        raise ValueError(f"unknown ball kind {kind!r}; choose from {BALL_KINDS}")
    return np.clip(col, 0, 255).astype(np.float32).reshape(n, 3)


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    a = axis / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def render_ball_sprite(kind: str, *, cx: float, cy: float, radius: float, rotation: np.ndarray,
                       light: np.ndarray, blur: tuple[float, float] = (0.0, 0.0)):
    """Render a shaded, textured, motion-blurred ball as a premultiplied RGBA patch.

    Parameters
    ----------
    kind : str
        Ball kind (:data:`BALL_KINDS`).
    cx, cy, radius : float
        Ball centre and radius in frame pixels (pixel ``k`` spans ``[k, k+1]``).
    rotation : (3, 3) array
        Ball orientation (camera frame -> ball frame is ``rotation.T``).
    light : (3,) array
        Unit vector towards the light; x right, y down, z towards the camera.
    blur : (dx, dy)
        Displacement in pixels during the exposure (motion blur along it).

    Returns
    -------
    x0, y0 : int
        Frame position of the patch's top-left pixel.
    rgb : (h, w, 3) float32
        Premultiplied colour.
    alpha : (h, w) float32
        Coverage in [0, 1].
    """
    import cv2

    blen = float(np.hypot(*blur))
    pad = int(np.ceil(blen / 2)) + 2
    x0, y0 = int(np.floor(cx - radius)) - pad, int(np.floor(cy - radius)) - pad
    size = int(np.ceil(cx + radius)) + pad - x0, int(np.ceil(cy + radius)) + pad - y0
    px = x0 + (np.arange(size[0] * _SS, dtype=np.float32) + 0.5) / _SS
    py = y0 + (np.arange(size[1] * _SS, dtype=np.float32) + 0.5) / _SS
    u = (px[None, :] - cx) / radius
    v = (py[:, None] - cy) / radius
    rr = u * u + v * v
    inside = rr <= 1.0
    uu, vv = np.broadcast_to(u, rr.shape)[inside], np.broadcast_to(v, rr.shape)[inside]
    nz = np.sqrt(np.clip(1.0 - uu * uu - vv * vv, 0, 1))
    normal = np.stack([uu, vv, nz], axis=1)
    alb = ball_albedo(kind, normal @ np.asarray(rotation, np.float32))
    lam = np.clip(normal @ light.astype(np.float32), 0, None)
    half = light + np.array([0, 0, 1.0])
    spec = np.clip(normal @ (half / np.linalg.norm(half)).astype(np.float32), 0, None) ** 24
    rim = 1.0 - 0.35 * (1.0 - nz) ** 2  # darkening at the limb
    colour = alb * ((0.35 + 0.75 * lam) * rim)[:, None] + 90.0 * spec[:, None]
    hi = np.zeros(rr.shape + (4,), np.float32)
    hi[inside, :3] = np.clip(colour, 0, 255)
    hi[inside, 3] = 1.0
    lo = cv2.resize(hi, size, interpolation=cv2.INTER_AREA)
    if blen >= 1.0:
        lo = cv2.filter2D(lo, -1, _line_kernel(blur), borderType=cv2.BORDER_CONSTANT)
    return x0, y0, lo[..., :3], lo[..., 3]


def _line_kernel(d: tuple[float, float]) -> np.ndarray:
    """Normalised kernel spreading one pixel uniformly along the segment ``[-d/2, d/2]``."""
    dx, dy = d
    k = 2 * int(np.ceil(max(abs(dx), abs(dy)) / 2)) + 3
    ker = np.zeros((k, k), np.float32)
    c = k // 2
    for t in np.linspace(-0.5, 0.5, max(2, int(np.hypot(dx, dy) * 4))):
        x, y = c + t * dx, c + t * dy
        ix, iy = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - ix, y - iy
        ker[iy, ix] += (1 - fx) * (1 - fy)
        ker[iy, ix + 1] += fx * (1 - fy)
        ker[iy + 1, ix] += (1 - fx) * fy
        ker[iy + 1, ix + 1] += fx * fy
    return ker / ker.sum()


def _composite(frame: np.ndarray, x0: int, y0: int, rgb: np.ndarray, alpha: np.ndarray) -> None:
    """Alpha-blend a premultiplied patch into ``frame`` (float32, in place), clipped to the frame."""
    h, w = frame.shape[:2]
    ph, pw = alpha.shape
    fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(w, x0 + pw), min(h, y0 + ph)
    if fx0 >= fx1 or fy0 >= fy1:
        return
    sl = (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))
    dst = frame[fy0:fy1, fx0:fx1]
    dst *= 1.0 - alpha[sl][..., None]
    dst += rgb[sl]


def visible_box(cx: float, cy: float, radius: float, *, width: int, height: int,
                occluder: np.ndarray | None = None, blur: tuple[float, float] = (0.0, 0.0)) -> BoxT | None:
    """Ground-truth box of a ball disc: its visible part, or None.

    Parameters
    ----------
    cx, cy, radius : float
        Disc in frame pixels.
    width, height : int
        Frame size; the box is clipped to it.
    occluder : (height, width) bool array, optional
        Pixels covered by something in front of the ball.
    blur : (dx, dy)
        The disc's displacement during the exposure: the box is then that of the disc swept along
        ``[-blur/2, blur/2]`` (the streak a motion-blurred ball leaves); ``(0, 0)``: the disc alone.

    Returns
    -------
    ``(x1, y1, x2, y2)`` float, or None when the (swept) disc is out of frame, more than
    :data:`MAX_OCCLUDED` of it is covered, or less than :data:`MIN_VISIBLE_PX` remains on an axis.
    """
    hx, hy = abs(float(blur[0])) / 2, abs(float(blur[1])) / 2
    box = (max(0.0, cx - radius - hx), max(0.0, cy - radius - hy), min(float(width), cx + radius + hx),
           min(float(height), cy + radius + hy))
    if box[2] - box[0] < MIN_VISIBLE_PX or box[3] - box[1] < MIN_VISIBLE_PX:
        return None
    if occluder is None:
        return tuple(float(v) for v in box)
    ss = 8  # samples per pixel along each axis
    step = 1.0 / ss
    xs = np.arange(np.floor(cx - radius - hx), np.ceil(cx + radius + hx), step) + step / 2
    ys = np.arange(np.floor(cy - radius - hy), np.ceil(cy + radius + hy), step) + step / 2
    disc = _swept_disc(xs - cx, ys - cy, radius, blur)
    ix, iy = np.floor(xs).astype(int), np.floor(ys).astype(int)
    in_x, in_y = (ix >= 0) & (ix < width), (iy >= 0) & (iy < height)
    covered = np.zeros_like(disc)
    covered[np.ix_(in_y, in_x)] = occluder[np.ix_(iy[in_y], ix[in_x])]
    covered &= disc
    if covered.sum() > MAX_OCCLUDED * disc.sum():
        return None
    vis = disc & ~covered & in_y[:, None] & in_x[None, :]
    if not vis.any():
        return None
    cols, rows = np.flatnonzero(vis.any(axis=0)), np.flatnonzero(vis.any(axis=1))
    # sample extents, widened by half a sample and never beyond the clipped disc
    vb = (max(box[0], xs[cols[0]] - step / 2), max(box[1], ys[rows[0]] - step / 2),
          min(box[2], xs[cols[-1]] + step / 2), min(box[3], ys[rows[-1]] + step / 2))
    if vb[2] - vb[0] < MIN_VISIBLE_PX or vb[3] - vb[1] < MIN_VISIBLE_PX:
        return None
    return tuple(float(v) for v in vb)


def _swept_disc(xs: np.ndarray, ys: np.ndarray, radius: float, blur: tuple[float, float]) -> np.ndarray:
    """(len(ys), len(xs)) bool: sample points (offsets from the disc's centre) within ``radius`` of the segment
    ``[-blur/2, blur/2]`` (a disc when ``blur`` is zero)."""
    dx, dy = float(blur[0]), float(blur[1])
    px, py = xs[None, :], ys[:, None]
    dd = dx * dx + dy * dy
    t = np.clip((px * dx + py * dy) / dd, -0.5, 0.5) if dd > 0 else 0.0
    return (px - t * dx) ** 2 + (py - t * dy) ** 2 <= radius * radius


# -------------------------------------------------------------------------------------------- motion
def _simulate(rng: np.random.Generator, *, n_frames: int, fps: float, width: int, ground_y: float,
              cam_x: np.ndarray, scale: float) -> list[tuple[float, float, float, float, float] | None]:
    """Per frame ``(world_x, y, radius, vx, vy)`` of the ball (velocities in px/s), or None.

    Throws follow one another with gaps; a throw ends when the ball leaves the frame sideways.
    """
    out: list = [None] * n_frames
    g = rng.uniform(700, 1300)
    sub = 8
    dt = 1.0 / fps / sub
    f = int(rng.integers(0, 6)) if rng.random() < 0.6 else 0
    while f < n_frames:
        # diameter: mostly 10-30 px, some about 8 px, some bigger
        d = scale * float(rng.choice([rng.uniform(10, 30), rng.uniform(7, 9.5), rng.uniform(30, 48)],
                                     p=[0.7, 0.12, 0.18]))
        r = d / 2
        if rng.random() < 0.3:  # enter from a side
            side = rng.choice([-1, 1])
            x = cam_x[f] + (width / 2) - side * (width / 2 + r - 1)
            vx = side * rng.uniform(150, 450)
        else:
            x = cam_x[f] + rng.uniform(0.15, 0.85) * width
            vx = rng.choice([-1, 1]) * rng.uniform(60, 380)
        y = rng.uniform(0.25, 0.7) * ground_y
        vy = rng.uniform(-520, 60)
        rest = rng.uniform(0.5, 0.75)
        while f < n_frames:
            out[f] = (x, y, r, vx, vy)
            for _ in range(sub):
                vy += g * dt
                x += vx * dt
                y += vy * dt
                if y + r > ground_y and vy > 0:
                    y = ground_y - r - (y + r - ground_y)
                    vy = -vy * rest
                    vx *= 0.9
            f += 1
            sx = x - (cam_x[f] if f < n_frames else cam_x[-1])
            if sx + r < -2 or sx - r > width + 2:
                break
        f += int(rng.integers(2, 9))  # gap before the next throw: negatives
    return out


# -------------------------------------------------------------------------------------------- render
def _scoreboard(rng: np.random.Generator, frame_w: int, frame_h: int):
    """(x0, y0, patch (h, w, 3) float32, alpha (h, w)) of a broadcast-style score overlay."""
    import cv2

    s = frame_h / 360
    w, h = int(200 * s), int(28 * s)
    patch = np.zeros((h, w, 3), np.uint8)
    patch[:] = (20, 25, 60)
    patch[:, : int(8 * s)] = tuple(int(v) for v in rng.integers(80, 255, 3))
    a, b = rng.integers(0, 6, 2)
    text = f"HOME {a} - {b} AWAY  {rng.integers(0, 90):02d}:{rng.integers(0, 60):02d}"
    cv2.putText(patch, text, (int(12 * s), int(19 * s)), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * s, (240, 240, 240), 1,
                cv2.LINE_AA)
    x0, y0 = int(12 * s), int(10 * s)
    return x0, y0, patch.astype(np.float32), np.full((h, w), 0.85, np.float32)


def _occluder_mask(x: float, top: float, bottom: float, half_w: float, width: int, height: int) -> np.ndarray:
    """(height, width) bool: pixels covered by the player drawn by :func:`_draw_player`."""
    import cv2

    m = np.zeros((height, width), np.uint8)
    x1, x2 = int(round(x - half_w)), int(round(x + half_w))
    m[max(0, int(round(top))):min(height, int(round(bottom))), max(0, x1):max(0, min(width, x2))] = 1
    centre, radius = _head(x, top, half_w)
    cv2.circle(m, centre, radius, 1, -1)
    return m.astype(bool)


def _head(x: float, top: float, half_w: float) -> tuple[tuple[int, int], int]:
    return (int(round(x)), int(round(top - half_w * 0.7))), max(2, int(half_w * 0.7))


def _shadow(frame: np.ndarray, *, cx: float, ground_y: float, radius: float, lift: float, scale: float) -> None:
    """Darken a soft ellipse on the ground under the ball (in place); fainter the higher the ball."""
    import cv2

    a = 0.45 * np.exp(-lift / (80 * scale))
    h, w = frame.shape[:2]
    ax, ay = max(1, int(radius * 1.1)), max(1, int(radius * 0.35))
    m = int(np.ceil(radius)) + 4
    x0, y0 = int(round(cx)) - ax - m, int(round(ground_y)) - ay - m
    x1, y1 = int(round(cx)) + ax + m + 1, int(round(ground_y)) + ay + m + 1
    fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if a < 0.03 or fx0 >= fx1 or fy0 >= fy1:
        return
    sh = np.zeros((y1 - y0, x1 - x0), np.float32)
    cv2.ellipse(sh, (int(round(cx)) - x0, int(round(ground_y)) - y0), (ax, ay), 0, 0, 360, float(a), -1,
                cv2.LINE_AA)
    sh = cv2.GaussianBlur(sh, (0, 0), max(0.8, radius * 0.3))[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
    frame[fy0:fy1, fx0:fx1] *= 1.0 - sh[..., None]


def _draw_player(frame: np.ndarray, *, x: float, top: float, bottom: float, half_w: float,
                 colour: np.ndarray) -> None:
    """A flat, side-lit torso and dark legs over rows [top, bottom), with a round head above (in place)."""
    import cv2

    h, w = frame.shape[:2]
    x1, x2 = int(round(x - half_w)), int(round(x + half_w))
    y1, y2 = max(0, int(round(top))), min(h, int(round(bottom)))
    fx1, fx2 = max(0, x1), max(0, min(w, x2))
    if fx1 < fx2 and y1 < y2:
        cols = np.arange(fx1, fx2, dtype=np.float32) + 0.5
        shade = 0.75 + 0.25 * np.cos(np.clip((cols - x) / (half_w + 1e-6), -1.5, 1.5))
        body = colour[None, :] * shade[:, None]
        knee = int(round(top + 0.55 * (bottom - top)))
        frame[y1:y2, fx1:fx2] = body[None]
        frame[max(y1, knee):y2, fx1:fx2] = body[None] * 0.35 + 20
    centre, radius = _head(x, top, half_w)
    cv2.circle(frame, centre, radius, (200, 160, 130), -1, cv2.LINE_AA)


def render_video(out_path: str | Path, *, seed: int, venue: str, n_frames: int = 40, width: int = 640,
                 height: int = 360, fps: float = 25.0, gt_extent: str = "disc") -> list[list[BoxT]]:
    """Write one synthetic video and return its ground truth.

    Parameters
    ----------
    out_path : path
        ``.mp4`` file to write (codec ``mp4v``).
    seed : int
        Everything (scene, ball, motion, occluder, distractors) follows from it and ``venue``.
    venue : str
        One of :data:`VENUES`.
    n_frames, width, height, fps :
        Video length and format.
    gt_extent : {"disc", "swept"}
        What a box covers (:data:`GT_EXTENTS`): the ball where it is at mid-exposure, or the streak its
        motion blur leaves (the disc swept over the exposure), as people who box blurred balls by eye draw it.

    Returns
    -------
    list of length ``n_frames``; element ``i`` lists frame ``i``'s ball boxes, ``xyxy`` float pixels
    (possibly empty: a negative frame).
    """
    import cv2

    if venue not in VENUES:
        raise ValueError(f"unknown venue {venue!r}; choose from {VENUES}")
    frames, gt = _render_frames(seed=seed, venue=venue, n_frames=n_frames, width=width, height=height, fps=fps,
                                gt_extent=gt_extent)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.stem}.tmp.mp4")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter cannot open {tmp} with codec mp4v")
    try:
        for fr in frames:
            writer.write(cv2.cvtColor(fr, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    tmp.replace(out_path)
    return gt


def _render_frames(*, seed: int, venue: str, n_frames: int, width: int, height: int, fps: float,
                   draw_ball: bool = True, gt_extent: str = "disc") -> tuple[list[np.ndarray], list[list[BoxT]]]:
    """RGB uint8 frames (H, W, 3) and per-frame ground-truth boxes; see :func:`render_video`.

    ``draw_ball=False`` renders the identical video without the ball sprite (its shadow stays): the
    difference of the two shows exactly where the ball was drawn.
    """
    import cv2

    if gt_extent not in GT_EXTENTS:
        raise ValueError(f"gt_extent must be one of {GT_EXTENTS}, got {gt_extent!r}")
    rng = np.random.default_rng([int(seed), VENUES.index(venue)])
    s = height / 360
    t = np.arange(n_frames + 1) / fps
    pan_speed = rng.choice([0.0, 1.0, 1.0]) * rng.uniform(-140, 140) * s
    pan_wobble = rng.uniform(0, 12) * s
    cam = pan_speed * t + pan_wobble * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * t)
    cam -= cam.min()
    world_w = width + int(np.ceil(cam.max())) + 2
    scene = _make_scene(rng, venue, width=width, height=height, world_w=world_w)
    kind = str(rng.choice(_VENUE_BALLS[venue]))
    if rng.random() < 0.3:
        kind = str(rng.choice(BALL_KINDS))
    track = _simulate(rng, n_frames=n_frames, fps=fps, width=width, ground_y=scene.ground_y, cam_x=cam,
                      scale=s)
    shutter = rng.uniform(0.15, 0.6)  # fraction of the frame interval the shutter is open
    spin_axis = rng.standard_normal(3)
    spin = rng.uniform(4, 20)  # rad/s

    # static world distractors: round signs and a ring, drawn into the world background
    world = scene.world.copy()
    for _ in range(int(rng.integers(1, 4))):
        c = (int(rng.uniform(0, world_w)), int(rng.uniform(0.3, 0.9) * height))
        rad = int(rng.uniform(5, 16) * s)
        colour = tuple(float(v) for v in rng.choice([[240, 240, 240], [230, 120, 40], [220, 220, 60], [30, 30, 30]]))
        cv2.circle(world, c, rad, colour, -1, cv2.LINE_AA)
        if rng.random() < 0.5:  # a logo-like inner mark
            cv2.circle(world, c, max(1, rad // 2), (40, 40, 40), max(1, rad // 5), cv2.LINE_AA)
    ring_c = (int(rng.uniform(0, world_w)), int(rng.uniform(0.35, 0.8) * height))
    cv2.circle(world, ring_c, int(rng.uniform(8, 20) * s), (230, 90, 30), max(1, int(2 * s)), cv2.LINE_AA)

    # occluder: a player-like figure crossing the ball's path at a chosen frame
    occ = None
    seen = [i for i, st in enumerate(track) if st is not None]
    if seen and rng.random() < 0.75:
        k = int(rng.choice(seen))
        wx, wy, wr = track[k][:3]
        half_w = rng.uniform(10, 22) * s
        top = min(wy - wr - rng.uniform(5, 40) * s, scene.ground_y - 60 * s)
        occ = dict(x_at=wx + rng.uniform(-0.5, 0.5) * wr, k=k, vx=rng.uniform(-160, 160) * s, half_w=half_w,
                   top=top, bottom=scene.ground_y + 4 * s,
                   colour=np.array(rng.choice([[200, 30, 40], [30, 60, 200], [240, 240, 240], [20, 20, 20],
                                               [250, 200, 20]]), np.float32))
    blemish = (rng.uniform(0.1, 0.9) * width, rng.uniform(0.2, 0.9) * height, rng.uniform(4, 10) * s,
               rng.choice([-1.0, 1.0]) * rng.uniform(40, 80))
    board = _scoreboard(rng, width, height) if rng.random() < 0.85 else None
    frame_rng = np.random.default_rng(rng.integers(0, 2**63))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    blem_w = np.exp(-(((xx - blemish[0]) ** 2 + (yy - blemish[1]) ** 2) / (2 * blemish[2] ** 2)))
    vignette = 1.0 - 0.5 * (((xx - width / 2) / width) ** 2 + ((yy - height / 2) / height) ** 2)
    # per-pixel affine map applied to every frame: lens blemish, vignetting and exposure gain
    mul = np.repeat(((1.0 - abs(blemish[3]) / 255 * blem_w) * vignette * scene.gain)[..., None], 3, axis=2)
    add = np.repeat((max(0.0, blemish[3]) * blem_w * vignette * scene.gain)[..., None], 3, axis=2)
    del yy, xx, blem_w, vignette
    # sensor noise: random windows of a small bank (drawing fresh noise every frame is the slowest step)
    pad = 32
    noise_bank = frame_rng.standard_normal((3, height + pad, width + pad, 3), dtype=np.float32) * scene.noise_sigma

    frames, gt = [], []
    for i in range(n_frames):
        cx0 = int(round(cam[i]))
        frame = world[:, cx0:cx0 + width].copy()
        occl_mask = np.zeros((height, width), bool)
        occ_x = None
        if occ is not None:
            occ_x = occ["x_at"] + occ["vx"] * (i - occ["k"]) / fps - cx0
            occl_mask = _occluder_mask(occ_x, occ["top"], occ["bottom"], occ["half_w"], width, height)
        if board is not None:
            bx, by, patch, _ = board
            occl_mask[by:by + patch.shape[0], bx:bx + patch.shape[1]] = True
        boxes: list[BoxT] = []
        st = track[i]
        if st is not None:
            wx, wy, r, vx, vy = st
            cx, cy = wx - cam[i], wy
            cam_v = (cam[i + 1] - cam[i]) * fps
            blur = ((vx - cam_v) * shutter / fps, vy * shutter / fps)
            _shadow(frame, cx=cx, ground_y=scene.ground_y, radius=r, lift=max(0.0, scene.ground_y - (cy + r)),
                    scale=s)
            rot = _rotation(spin_axis, spin * t[i])
            x0, y0, rgb, alpha = render_ball_sprite(kind, cx=cx, cy=cy, radius=r, rotation=rot, light=scene.light,
                                                    blur=blur)
            if draw_ball:
                _composite(frame, x0, y0, rgb, alpha)
            box = visible_box(cx, cy, r, width=width, height=height, occluder=occl_mask,
                              blur=blur if gt_extent == "swept" else (0.0, 0.0))
            if box is not None:
                boxes.append(box)
        if occ is not None:
            _draw_player(frame, x=occ_x, top=occ["top"], bottom=occ["bottom"], half_w=occ["half_w"],
                         colour=occ["colour"])
        frame *= mul
        frame += add
        if board is not None:
            bx, by, patch, a = board
            region = frame[by:by + patch.shape[0], bx:bx + patch.shape[1]]
            region *= 1.0 - a[..., None]
            region += patch * a[..., None]
        ox, oy = frame_rng.integers(0, pad, 2)
        frame += noise_bank[i % len(noise_bank), oy:oy + height, ox:ox + width]
        np.clip(frame, 0, 255, out=frame)
        frames.append(frame.astype(np.uint8))
        gt.append(boxes)
    return frames, gt


# --------------------------------------------------------------------------------------------- suite
def _video_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def suite_videos(*, n_videos: int, seed: int) -> list[tuple[str, str, int]]:
    """``(video_id, venue, video_seed)`` of each video of a suite; venues cycle through :data:`VENUES`."""
    out = []
    for i in range(n_videos):
        venue = VENUES[i % len(VENUES)]
        out.append((f"synth_{i:02d}_{venue}", venue, _video_seed(seed, i)))
    return out


def make_suite(out_dir: str | Path, *, n_videos: int = 6, n_frames: int = 40, width: int = 640, height: int = 360,
               fps: float = 25.0, seed: int = 0, gt_extent: str = "disc") -> Path:
    """Write ``n_videos`` synthetic videos and their ground truth into ``out_dir``.

    Writes ``<video_id>.mp4`` per video, ``ground_truth.json`` (our COCO format: one image per frame,
    ``file_name`` ``<video_id>/<index:06d>.jpg``, boxes with ``source="ground_truth"``) and
    ``suite.json`` (the parameters). Does nothing if both JSON files exist with the same parameters
    and every video is present.

    Returns
    -------
    Path of ``ground_truth.json``.
    """
    from .coco import save_coco

    out_dir = Path(out_dir)
    gt_path, meta_path = out_dir / "ground_truth.json", out_dir / "suite.json"
    params = {"version": SUITE_VERSION, "n_videos": int(n_videos), "n_frames": int(n_frames), "width": int(width),
              "height": int(height), "fps": float(fps), "seed": int(seed)}
    if gt_extent != "disc":  # a suite written before the option existed stays valid
        params["gt_extent"] = str(gt_extent)
    videos = suite_videos(n_videos=n_videos, seed=seed)
    if gt_path.is_file() and meta_path.is_file() and all((out_dir / f"{v}.mp4").is_file() for v, _, _ in videos):
        try:
            if json.loads(meta_path.read_text()).get("params") == params:
                return gt_path
        except (OSError, json.JSONDecodeError):
            pass
    meta_path.unlink(missing_ok=True)  # a half-rewritten suite must not look finished
    ds = Dataset(info={"description": "pseudolabel synthetic suite", **params})
    fid = 0
    for video_id, venue, vseed in videos:
        per_frame = render_video(out_dir / f"{video_id}.mp4", seed=vseed, venue=venue, n_frames=n_frames,
                                 width=width, height=height, fps=fps, gt_extent=gt_extent)
        for idx, boxes in enumerate(per_frame):
            fid += 1
            ds.frames.append(Frame(id=fid, file_name=f"{video_id}/{idx:06d}.jpg", width=width, height=height,
                                   video_id=video_id, frame_index=idx, timestamp=idx / fps))
            ds.boxes.extend(Box(image_id=fid, xyxy=b, score=1.0, round=0, source="ground_truth", category_id=1)
                            for b in boxes)
    ds.renumber()
    save_coco(ds, gt_path)
    atomic_write_json(meta_path, {"params": params,
                                  "videos": [{"video_id": v, "venue": ve, "seed": s} for v, ve, s in videos]})
    return gt_path


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m pseudolabel.synth",
                                description="Write synthetic ball videos with exact ground truth (COCO).")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--n-videos", type=int, default=6)
    p.add_argument("--n-frames", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--gt-extent", choices=GT_EXTENTS, default="disc",
                   help="boxes cover the ball at mid-exposure (disc) or its motion-blur streak (swept)")
    a = p.parse_args(argv)
    path = make_suite(a.out, n_videos=a.n_videos, n_frames=a.n_frames, width=a.width, height=a.height, fps=a.fps,
                      seed=a.seed, gt_extent=a.gt_extent)
    print(path)


if __name__ == "__main__":
    main()
