"""A vectorised ray caster for 3D-Shapes-like scenes (torch, CPU or GPU).

Scene (world units, y up): a floor at y = 0; a room of three walls (back wall z = −Z, side
walls x = ±X, height H) whose corners come into view as the camera turns; a pale sky above
the walls; an object standing at the origin; one point light in front, to the left and above.
The camera orbits the vertical axis through the object by the orientation angle and looks at
it, so the object turns and the wall corner slides across the image as in the real frames.

The image is linear in the three hues, so each (scale, shape, orientation) is rendered once
into four coefficient maps — the shaded coverage of sky, floor, wall and object per pixel
(supersampled, so edges are anti-aliased) — and any of the 1 000 colourings is the sum
``Σ_region coeff_region · rgb(hue_region)``. This makes all 480 000 images cheap: 480
geometry renders and one small matrix product per image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["SceneConfig", "compose", "hue_rgb", "render_geometry"]

SKY_RGB = (0.600, 0.886, 0.976)  # measured on the real frames (HSV 0.54, 0.386, 0.976)


@dataclass(frozen=True)
class SceneConfig:
    """Camera, room, light and object proportions (world units; angles in degrees)."""

    image_size: int = 64
    supersample: int = 3
    fov: float = 44.0
    camera_distance: float = 5.0
    camera_height: float = 1.7
    target_height: float = 0.95
    wall_z: float = 2.6
    wall_x: float = 3.6
    wall_height: float = 2.1
    light: tuple[float, float, float] = (-2.0, 5.0, 5.0)
    ambient: float = 0.35
    diffuse: float = 0.85
    shadow_softness: float = 6.0
    march_steps: int = 40
    shadow_steps: int = 24
    # object proportions at scale 1: cube half-side; cylinder radius/half-height;
    # sphere radius; capsule radius/half-length of its straight part
    cube_half: float = 0.5
    cylinder: tuple[float, float] = (0.5, 0.55)
    sphere: float = 0.6
    capsule: tuple[float, float] = (0.42, 0.5)


def hue_rgb(hue: np.ndarray | float) -> np.ndarray:
    """Fully saturated, full-value RGB of hues in [0, 1): HSV (h, 1, 1) → ``(..., 3)``."""
    h = np.asarray(hue, dtype=np.float64)[..., None]
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return 1.0 - np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _sdf(p: torch.Tensor, shape: torch.Tensor, scale: torch.Tensor, cfg: SceneConfig):
    """Signed distance to the object: p (n, 3), shape (n,) in 0..3, scale (n,)."""
    x, y, z = p.unbind(-1)
    s = scale
    # cube, resting on the floor
    a = cfg.cube_half * s
    q = torch.stack([x.abs() - a, (y - a).abs() - a, z.abs() - a], -1)
    box = q.clamp(min=0).norm(dim=-1) + q.max(-1).values.clamp(max=0)
    # cylinder (vertical axis)
    r, h = cfg.cylinder[0] * s, cfg.cylinder[1] * s
    dx = torch.hypot(x, z) - r
    dy = (y - h).abs() - h
    cyl = torch.hypot(dx.clamp(min=0), dy.clamp(min=0)) + torch.maximum(dx, dy).clamp(max=0)
    # sphere
    rs = cfg.sphere * s
    sph = torch.sqrt(x * x + (y - rs) ** 2 + z * z) - rs
    # capsule: segment from y = rc to y = rc + 2 hc
    rc, hc = cfg.capsule[0] * s, cfg.capsule[1] * s
    yc = torch.minimum((y - rc).clamp(min=0), 2 * hc) + rc
    cap = torch.sqrt(x * x + (y - yc) ** 2 + z * z) - rc
    return torch.stack([box, cyl, sph, cap], -1).gather(-1, shape[:, None]).squeeze(-1)


def _bound(shape: torch.Tensor, scale: torch.Tensor, cfg: SceneConfig):
    """Centre height and radius of a sphere enclosing the object."""
    half_h = torch.tensor(
        [cfg.cube_half, cfg.cylinder[1], cfg.sphere, cfg.capsule[0] + cfg.capsule[1]]
    )[shape]
    rad = torch.tensor(
        [cfg.cube_half * 3**0.5, float(np.hypot(*cfg.cylinder)), cfg.sphere,
         cfg.capsule[0] + cfg.capsule[1]]
    )[shape]  # fmt: skip
    return half_h * scale, rad * scale * 1.02 + 1e-3


def render_geometry(
    scale: np.ndarray,
    shape: np.ndarray,
    orientation_deg: np.ndarray,
    cfg: SceneConfig | None = None,
) -> np.ndarray:
    """Coefficient maps ``(n, 4, S, S)`` float32 (sky, floor, wall, object) for n geometries.

    Args:
        scale: object scales (n,) (0.75 … 1.25 in the real grid).
        shape: object shapes (n,) in 0..3 (cube, cylinder, sphere, capsule).
        orientation_deg: camera azimuth (n,) in degrees (−30 … 30).
    """
    cfg = cfg or SceneConfig()
    n = len(scale)
    ss, size = cfg.supersample, cfg.image_size
    res = size * ss
    scale_t = torch.as_tensor(np.asarray(scale), dtype=torch.float32)
    shape_t = torch.as_tensor(np.asarray(shape), dtype=torch.long)
    az = torch.as_tensor(np.radians(np.asarray(orientation_deg)), dtype=torch.float32)
    # camera frame
    eye = torch.stack(
        [cfg.camera_distance * torch.sin(az), torch.full_like(az, cfg.camera_height),
         cfg.camera_distance * torch.cos(az)], -1
    )  # fmt: skip
    target = torch.tensor([0.0, cfg.target_height, 0.0])
    fwd = torch.nn.functional.normalize(target - eye, dim=-1)
    right = torch.nn.functional.normalize(
        torch.cross(fwd, torch.tensor([0.0, 1.0, 0.0]).expand_as(fwd), dim=-1), dim=-1
    )
    up = torch.cross(right, fwd, dim=-1)
    t = float(np.tan(np.radians(cfg.fov) / 2))
    coords = (torch.arange(res, dtype=torch.float32) + 0.5) / res * 2 - 1
    py, px = torch.meshgrid(-coords * t, coords * t, indexing="ij")
    d = (
        fwd[:, None, None] + px[None, ..., None] * right[:, None, None]
        + py[None, ..., None] * up[:, None, None]
    )  # fmt: skip
    d = torch.nn.functional.normalize(d, dim=-1).reshape(n, -1, 3)
    o = eye[:, None, :].expand_as(d)
    inf = torch.full(d.shape[:2], float("inf"))
    # planes: floor, back wall, side walls (walls only below their top)
    t_floor = torch.where(d[..., 1] < 0, -o[..., 1] / d[..., 1], inf)
    t_back = torch.where(d[..., 2] < 0, (-cfg.wall_z - o[..., 2]) / d[..., 2], inf)
    side_x = torch.where(d[..., 0] > 0, cfg.wall_x, -cfg.wall_x)
    t_side = torch.where(d[..., 0] != 0, (side_x - o[..., 0]) / d[..., 0], inf)
    t_wall = torch.minimum(t_back, t_side)
    y_wall = o[..., 1] + t_wall * d[..., 1]
    t_wall = torch.where((y_wall <= cfg.wall_height) & (y_wall >= 0), t_wall, inf)
    is_floor = t_floor < t_wall
    t_plane = torch.minimum(t_floor, t_wall)
    hit_plane = torch.isfinite(t_plane)
    p_plane = o + t_plane.nan_to_num(posinf=0.0)[..., None] * d
    n_wall = torch.where(
        (t_back <= t_side)[..., None],
        torch.tensor([0.0, 0.0, 1.0]),
        torch.stack([-torch.sign(side_x), torch.zeros_like(side_x), torch.zeros_like(side_x)], -1),
    )
    n_plane = torch.where(is_floor[..., None], torch.tensor([0.0, 1.0, 0.0]), n_wall)
    # object: sphere tracing inside its bounding sphere
    cy, rad = _bound(shape_t, scale_t, cfg)
    centre = torch.stack([torch.zeros(n), cy, torch.zeros(n)], -1)[:, None, :]
    oc = o - centre
    b = (oc * d).sum(-1)
    disc = b * b - ((oc * oc).sum(-1) - rad[:, None] ** 2)
    t_obj = torch.full(d.shape[:2], float("inf"))
    cand = disc > 0
    bi, ri = torch.nonzero(cand, as_tuple=True)
    if bi.numel():
        tt = (-b - disc.clamp(min=0).sqrt())[bi, ri].clamp(min=0)
        ro, rd = o[bi, ri], d[bi, ri]
        sh, sc = shape_t[bi], scale_t[bi]
        hit = torch.zeros_like(tt, dtype=torch.bool)
        for _ in range(cfg.march_steps):
            dist = _sdf(ro + tt[:, None] * rd, sh, sc, cfg)
            hit |= dist < 1e-3
            tt = torch.where(hit, tt, tt + dist)
        t_obj[bi[hit], ri[hit]] = tt[hit]
    is_obj = t_obj < t_plane
    # shading of every hit point
    light = torch.tensor(cfg.light)
    p_obj = o + t_obj.nan_to_num(posinf=0.0)[..., None] * d
    p = torch.where(is_obj[..., None], p_obj, p_plane)
    normal = n_plane.clone()
    oi, oj = torch.nonzero(is_obj, as_tuple=True)
    if oi.numel():
        q, sh, sc = p[oi, oj], shape_t[oi], scale_t[oi]
        eps = 1e-3
        k = torch.tensor([[1, -1, -1], [-1, -1, 1], [-1, 1, -1], [1, 1, 1]], dtype=torch.float32)
        grad = sum(kk * _sdf(q + eps * kk, sh, sc, cfg)[:, None] for kk in k)
        normal[oi, oj] = torch.nn.functional.normalize(grad, dim=-1)
    to_light = light - p
    dist_light = to_light.norm(dim=-1)
    ldir = to_light / dist_light[..., None]
    lambert = (normal * ldir).sum(-1).clamp(min=0)
    # soft shadows on the floor and walls from the object
    shadow = torch.ones_like(lambert)
    oc = p - centre
    bl = (oc * ldir).sum(-1)
    closest = ((oc * oc).sum(-1) - bl.clamp(min=0) ** 2).clamp(min=0).sqrt()
    receives = hit_plane & ~is_obj & (closest < rad[:, None] * 2.0) & (bl < 0)
    si, sj = torch.nonzero(receives, as_tuple=True)
    if si.numel():
        q, l, sh, sc = p[si, sj], ldir[si, sj], shape_t[si], scale_t[si]
        tt = torch.full((si.numel(),), 0.02)
        res_s = torch.ones_like(tt)
        for _ in range(cfg.shadow_steps):
            h = _sdf(q + tt[:, None] * l, sh, sc, cfg)
            res_s = torch.minimum(res_s, cfg.shadow_softness * h / tt)
            tt = tt + h.clamp(min=0.02, max=0.4)
        res_s = res_s.clamp(0, 1)
        shadow[si, sj] = res_s * res_s * (3 - 2 * res_s)
    shade = (cfg.ambient + cfg.diffuse * lambert * shadow).clamp(max=1.0)
    region = torch.full(d.shape[:2], 0, dtype=torch.long)  # 0 sky
    region = torch.where(hit_plane & is_floor, 1, region)
    region = torch.where(hit_plane & ~is_floor, 2, region)
    region = torch.where(is_obj, 3, region)
    value = torch.where(region == 0, torch.ones_like(shade), shade)
    coeff = torch.zeros(n, 4, d.shape[1])
    coeff.scatter_(1, region[:, None, :], value[:, None, :])
    coeff = coeff.reshape(n, 4, size, ss, size, ss).mean((3, 5))
    return coeff.numpy().astype(np.float32)


def compose(
    coeff: np.ndarray, floor_hue: np.ndarray, wall_hue: np.ndarray, object_hue: np.ndarray
) -> np.ndarray:
    """Images ``(n, 3, S, S)`` float32 in [0, 1] from coefficient maps ``(n, 4, S, S)``
    and per-image hues ``(n,)``: ``sky·rgb_sky + Σ coeff_region · rgb(hue_region)``."""
    palette = np.stack(
        [
            np.broadcast_to(np.asarray(SKY_RGB), (len(coeff), 3)),
            hue_rgb(floor_hue),
            hue_rgb(wall_hue),
            hue_rgb(object_hue),
        ],
        axis=1,
    ).astype(np.float32)  # (n, 4 regions, 3 channels)
    n, _, h, w = coeff.shape
    out = np.matmul(palette.transpose(0, 2, 1), coeff.reshape(n, 4, h * w))
    return np.clip(out, 0.0, 1.0, out=out).reshape(n, 3, h, w)
