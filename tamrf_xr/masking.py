"""Validity masks from the products' quality layers (pure NumPy/SciPy kernels).

Sentinel-2: the scene classification (SCL) classes the paper treats as invalid, then a
morphological clean-up (opening removes isolated false detections, closing fills holes, a
dilation of ~25 px at 10 m covers cloud edges and thin shadows the classifier misses).
Landsat: QA_PIXEL fill, dilated cloud, cirrus, cloud and shadow bits, radiometric saturation
(QA_RADSAT), high aerosol (SR_QA_AEROSOL), with fill dilated. Snow is valid by default, as in
the paper, and can be made invalid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["MaskConfig", "landsat_invalid", "s2_invalid"]

S2_INVALID_SCL = (0, 1, 2, 3, 7, 8, 9, 10)
"""no data, saturated/defective, dark area, cloud shadow, unclassified, cloud medium and high
probability, thin cirrus."""
S2_SNOW_SCL = 11
QA_PIXEL_INVALID_BITS = (0, 1, 2, 3, 4)
"""fill, dilated cloud, cirrus, cloud, cloud shadow."""
QA_PIXEL_SNOW_BIT = 5
QA_RADSAT_BAND_BITS = tuple(range(8))
"""Saturation of bands 1-7 and (bit 7) band 9; bit 11 is terrain occlusion."""
QA_RADSAT_TERRAIN_OCCLUSION_BIT = 11
AEROSOL_LEVEL_HIGH = 3


@dataclass(frozen=True)
class MaskConfig:
    """Morphology and class choices of the validity masks (sizes in pixels of the mask)."""

    s2_opening_px: int = 1
    s2_closing_px: int = 2
    s2_dilation_px: int = 25
    """About 250 m around clouds and shadows at 10 m."""
    landsat_fill_dilation_px: int = 1
    landsat_dilation_px: int = 0
    """Extra dilation of the Landsat cloud/shadow mask (QA_PIXEL already has dilated cloud)."""
    snow_is_invalid: bool = False
    high_aerosol_is_invalid: bool = True

    def __post_init__(self) -> None:
        for name in ("s2_opening_px", "s2_closing_px", "s2_dilation_px",
                     "landsat_fill_dilation_px", "landsat_dilation_px"):  # fmt: skip
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def _disk(radius: int) -> np.ndarray:
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return x * x + y * y <= radius * radius


def _dilate_disk(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilation by a Euclidean disk of ``radius`` pixels (identical to ``binary_dilation`` with
    :func:`_disk`): every pixel within ``radius`` of a True pixel. A distance transform costs
    the same whatever the radius, where the structuring element grows with its square."""
    if not mask.any():
        return mask.copy()
    if mask.all():
        return mask.copy()
    return ndimage.distance_transform_edt(~mask) <= radius


def _per_image(mask: np.ndarray, operation, radius: int) -> np.ndarray:
    """Apply a 2-D morphology to the last two axes of a (..., H, W) mask.

    Openings and closings run on an edge-padded image: SciPy treats the outside as False, so
    they would otherwise erode a mask inwards from the image border (a fully cloudy image
    would get a valid rim). A dilation needs no padding.
    """
    if radius == 0:
        return mask
    if operation is ndimage.binary_opening:
        return _open_or_close(mask, radius, closing=False)
    if operation is ndimage.binary_closing:
        return _open_or_close(mask, radius, closing=True)
    flat = mask.reshape(-1, *mask.shape[-2:])
    out = [_dilate_disk(m, radius) for m in flat]
    return (np.stack(out) if out else flat).reshape(mask.shape)


def _shrink(mask: np.ndarray, radius: int, combine) -> np.ndarray:
    """(..., H, W) -> (..., H - 2r, W - 2r): ``combine`` (``&``: erosion, ``|``: dilation)
    over the disk of ``radius`` around each pixel that has the whole disk inside ``mask``.

    These are the pixels where SciPy's erosion/dilation do not depend on its border value;
    the disk is symmetric, so the reflection a dilation applies to it changes nothing.
    """
    rows, cols = mask.shape[-2] - 2 * radius, mask.shape[-1] - 2 * radius
    offsets = np.argwhere(_disk(radius))
    out = mask[..., offsets[0][0] : offsets[0][0] + rows, offsets[0][1] : offsets[0][1] + cols]
    out = out.copy()
    for dy, dx in offsets[1:]:
        combine(out, mask[..., dy : dy + rows, dx : dx + cols], out=out)
    return out


def _open_or_close(mask: np.ndarray, radius: int, closing: bool) -> np.ndarray:
    """``binary_opening`` / ``binary_closing`` by :func:`_disk` of each (..., H, W) image
    padded by 2 x ``radius`` with its edge pixels, cropped back to (..., H, W).

    Each step evaluates only the pixels unaffected by the padded image's border (the first
    loses ``radius`` pixels each side, the second the rest of the padding), which are
    exactly the pixels kept by the crop: the same result as SciPy on the padded image, with
    one array operation per disk element for the whole stack of images.
    """
    widths = [(0, 0)] * (mask.ndim - 2) + [(2 * radius, 2 * radius)] * 2
    padded = np.pad(mask, widths, mode="edge")
    first, second = (np.logical_or, np.logical_and) if closing else (np.logical_and, np.logical_or)
    return _shrink(_shrink(padded, radius, first), radius, second)


def s2_invalid(scl: np.ndarray, config: MaskConfig | None = None, factor: int = 1) -> np.ndarray:
    """Invalid pixels of Sentinel-2 images from their SCL.

    The classes are decided per SCL pixel; with ``factor`` > 1 each class pixel then becomes
    ``factor`` x ``factor`` mask pixels before the morphology (radii in mask pixels), which is
    ``s2_invalid`` of the SCL repeated ``factor`` times along both axes, with 1 / factor² of
    the classification work.

    Args:
        scl: (..., H, W) integer SCL codes.
        config: classes and morphology.
        factor: mask pixels per SCL pixel along each axis (2: a 20 m SCL, 10 m masks).

    Returns:
        (..., H * factor, W * factor) bool, True where the pixel must not be used.
    """
    config = config or MaskConfig()
    codes = S2_INVALID_SCL + ((S2_SNOW_SCL,) if config.snow_is_invalid else ())
    nodata = scl == 0
    invalid = np.isin(scl, codes) & ~nodata
    if factor != 1:
        invalid, nodata = (_repeat(m, factor) for m in (invalid, nodata))
    cleaned = _per_image(invalid, ndimage.binary_opening, config.s2_opening_px)
    cleaned = _per_image(cleaned, ndimage.binary_closing, config.s2_closing_px)
    cleaned = _per_image(cleaned, ndimage.binary_dilation, config.s2_dilation_px)
    # No data stays invalid whatever the morphology did.
    return cleaned | nodata


def _repeat(mask: np.ndarray, factor: int) -> np.ndarray:
    """(..., H, W) -> (..., H * factor, W * factor), each pixel a factor x factor block."""
    return np.repeat(np.repeat(mask, factor, axis=-2), factor, axis=-1)


def landsat_invalid(
    qa_pixel: np.ndarray,
    qa_radsat: np.ndarray | None = None,
    qa_aerosol: np.ndarray | None = None,
    config: MaskConfig | None = None,
) -> np.ndarray:
    """Invalid pixels of Landsat C2 L2 images from their QA bands (30 m).

    Args:
        qa_pixel: (..., h, w) uint16 QA_PIXEL.
        qa_radsat: (..., h, w) uint16 QA_RADSAT, or None.
        qa_aerosol: (..., h, w) uint8 SR_QA_AEROSOL, or None.

    Returns:
        (..., h, w) bool, True where the pixel must not be used.
    """
    config = config or MaskConfig()
    qa = qa_pixel.astype(np.uint32)
    bits = QA_PIXEL_INVALID_BITS + ((QA_PIXEL_SNOW_BIT,) if config.snow_is_invalid else ())
    flags = np.uint32(sum(1 << b for b in bits))
    fill = (qa & 1).astype(bool)
    invalid = (qa & flags) != 0
    invalid = _per_image(invalid & ~fill, ndimage.binary_dilation, config.landsat_dilation_px)
    if qa_radsat is not None:
        saturation = np.uint32(sum(1 << b for b in QA_RADSAT_BAND_BITS))
        invalid |= (qa_radsat.astype(np.uint32) & saturation) != 0
    if qa_aerosol is not None and config.high_aerosol_is_invalid:
        aerosol = qa_aerosol.astype(np.uint8)
        invalid |= (((aerosol >> 6) & 3) == AEROSOL_LEVEL_HIGH) & ((aerosol & 1) == 0)
    fill = _per_image(fill, ndimage.binary_dilation, config.landsat_fill_dilation_px)
    return invalid | fill
