"""The spec's linear-regression LPIPS term, with weights from a user-given folder.

Per S2 target date: X = the OBSERVED S2 10 m bands (B2 B3 B4 B8), Y = a group of PREDICTED
bands at that date (not degraded): the S2 20 m bands; Landsat B1-B7; LST with NDVI appended
to X (this group x 0.1). X and Y are z-scored over clear pixels, a bias column added, the
ridge system ``(X^T X + 1e-3 I) A = X^T Y`` solved in float64 with A detached, and
``Y_hat = X A`` (un-z-scored). Loss = LPIPS(Y, Y_hat) band by band (each band repeated to 3
channels), the gradient through Y only. A date is skipped with more than 25 % masked pixels,
fewer than ``10 n_X n_Y`` valid samples, or a loss above 10. Border crop 27 px.

LPIPS needs weights that cannot be downloaded at run time; :meth:`LpipsTerm.from_folder`
reads two files from a folder the user gives (``--lpips-weights DIR``):

- ``vgg16.pth``: torchvision's ImageNet VGG16 (``vgg16-397923af.pth``, from
  ``https://download.pytorch.org/models/vgg16-397923af.pth`` or a torchvision cache,
  ``~/.cache/torch/hub/checkpoints/``), keys ``features.N.weight`` / ``features.N.bias``;
- ``lpips_vgg.pth``: LPIPS v0.1's linear layers for VGG (``lpips/weights/v0.1/vgg.pth`` in
  the ``lpips`` package, BSD-2), keys ``lin0.model.1.weight`` ... ``lin4.model.1.weight``.

Both are read with ``torch.load(weights_only=True)``: tensors only, no code. Without them the
term is off, said once in the training log. Values enter LPIPS as they are (standardised
bands); LPIPS's own input scaling layer is applied as in its reference implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from tamrf_xr.normalisation import Normalisation

__all__ = ["LPIPS", "LpipsTerm", "ridge_targets"]

VGG_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
"""Indices of the 13 convs in torchvision's ``vgg16().features``."""
VGG_POOLS = (4, 9, 16, 23)
VGG_TAPS = (3, 8, 15, 22, 29)
"""The ReLU outputs LPIPS compares: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3."""
VGG_WIDTHS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)


class LPIPS(nn.Module):
    """LPIPS (v0.1, VGG16): ``forward(a, b)`` with (n, 3, h, w) images -> (n,) distances."""

    def __init__(self) -> None:
        super().__init__()
        widths = iter(VGG_WIDTHS)
        layers, channels = [], 3
        for index in range(30):
            if index in VGG_CONVS:
                out = next(widths)
                layers.append(nn.Conv2d(channels, out, 3, padding=1))
                channels = out
            elif index in VGG_POOLS:
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(nn.ReLU(inplace=False))
        self.features = nn.Sequential(*layers)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in (64, 128, 256, 512, 512))
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)

    def _taps(self, x: Tensor) -> list[Tensor]:
        x = (x - self.shift) / self.scale
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in VGG_TAPS:
                taps.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return taps

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        total = a.new_zeros(a.shape[0])
        for lin, fa, fb in zip(self.lins, self._taps(a), self._taps(b), strict=True):
            total = total + lin((fa - fb) ** 2).mean(dim=(1, 2, 3))
        return total

    @classmethod
    def from_files(cls, vgg16: Path, lpips_vgg: Path) -> LPIPS:
        """Load torchvision's VGG16 and LPIPS's linear layers (tensors only)."""
        network = cls()
        vgg = torch.load(vgg16, map_location="cpu", weights_only=True)
        features = {k[len("features.") :]: v for k, v in vgg.items() if k.startswith("features.")}
        network.features.load_state_dict(features)
        lins = torch.load(lpips_vgg, map_location="cpu", weights_only=True)
        for k, lin in enumerate(network.lins):
            lin.weight.data.copy_(lins[f"lin{k}.model.1.weight"])
        return network


def ridge_targets(x: Tensor, y: Tensor, valid: Tensor, ridge: float = 1e-3) -> Tensor:
    """Y_hat = X A: the ridge regression of Y on X (z-scored over ``valid`` pixels, with a
    bias column), solved in float64, A detached; back in Y's units.

    Args:
        x: (n_x, h, w) regressors; y: (n_y, h, w); valid: (h, w) bool.

    Returns:
        (n_y, h, w), no gradient.
    """
    xs = x.detach().to(torch.float64)
    ys = y.detach().to(torch.float64)
    xv, yv = xs[:, valid].T, ys[:, valid].T  # (samples, n)
    x_mean, x_std = xv.mean(0), xv.std(0).clamp_min(1e-12)
    y_mean, y_std = yv.mean(0), yv.std(0).clamp_min(1e-12)
    design = torch.cat([(xv - x_mean) / x_std, torch.ones(len(xv), 1, dtype=xv.dtype)], dim=1)
    gram = design.T @ design + ridge * torch.eye(design.shape[1], dtype=xv.dtype)
    coefficients = torch.linalg.solve(gram, design.T @ ((yv - y_mean) / y_std))
    everywhere = xs.flatten(1).T
    full = torch.cat(
        [(everywhere - x_mean) / x_std, torch.ones(len(everywhere), 1, dtype=xv.dtype)], dim=1
    )
    fitted = (full @ coefficients) * y_std + y_mean  # (pixels, n_y)
    return fitted.T.reshape(y.shape).to(y.dtype)


S2_10M = (0, 1, 2, 6)  # B2 B3 B4 B8 among the 10 S2 channels
S2_20M = (3, 4, 5, 7, 8, 9)  # B5 B6 B7 B8A B11 B12
LANDSAT_SR = tuple(range(7))
RED, NIR = 2, 6


class LpipsTerm:
    """The LPIPS-style term, a ``sample_loss`` extra (see the module docstring)."""

    def __init__(
        self,
        network: LPIPS,
        normalisation: Normalisation | None = None,
        crop_px: int = 27,
        max_masked: float = 0.25,
        max_loss: float = 10.0,
    ) -> None:
        self.network = network
        self.normalisation = normalisation
        self.crop_px = crop_px
        self.max_masked = max_masked
        self.max_loss = max_loss

    @classmethod
    def from_folder(cls, folder: Path, device: torch.device) -> LpipsTerm:
        folder = Path(folder)
        missing = [n for n in ("vgg16.pth", "lpips_vgg.pth") if not (folder / n).is_file()]
        if missing:
            raise FileNotFoundError(
                f"--lpips-weights {folder}: missing {', '.join(missing)} (see README, Training: "
                "torchvision's vgg16-397923af.pth as vgg16.pth, the lpips package's "
                "weights/v0.1/vgg.pth as lpips_vgg.pth)"
            )
        network = LPIPS.from_files(folder / "vgg16.pth", folder / "lpips_vgg.pth").to(device)
        return cls(network)

    def _distance(self, y: Tensor, y_hat: Tensor) -> Tensor:
        """Mean LPIPS over bands, each band repeated to 3 channels."""
        a = y[:, None].expand(-1, 3, -1, -1)
        b = y_hat[:, None].expand(-1, 3, -1, -1)
        return self.network(a, b).mean()

    def date_loss(
        self,
        observed: Tensor,
        clear: Tensor,
        predicted: Tensor,
        groups: Sequence[tuple[Tensor, float, bool]] | None = None,
    ) -> Tensor | None:
        """The term of one date.

        Args:
            observed: (10, H, W) observed S2 (standardised); clear (H, W).
            predicted: (18, H, W) the model's output at that date (standardised).
            groups: (Y, weight, with NDVI) triples; default the spec's three groups.
        """
        c = self.crop_px
        crop = (slice(c, observed.shape[-2] - c), slice(c, observed.shape[-1] - c))
        observed, clear, predicted = (
            observed[:, crop[0], crop[1]],
            clear[crop],
            predicted[:, crop[0], crop[1]],
        )
        valid = clear & torch.isfinite(observed[list(S2_10M)]).all(dim=0)
        if (1.0 - valid.float().mean()) > self.max_masked:
            return None
        x = torch.nan_to_num(observed[list(S2_10M)])
        if groups is None:
            s2, landsat = predicted[8:], predicted[:8]
            groups = [
                (s2[list(S2_20M)], 1.0, False),
                (landsat[list(LANDSAT_SR)], 1.0, False),
                (landsat[7:8], 0.1, True),
            ]
        total, used = None, False
        for y, weight, with_ndvi in groups:
            regressors = torch.cat([x, self._ndvi(x)[None]]) if with_ndvi else x
            if int(valid.sum()) < 10 * regressors.shape[0] * y.shape[0]:
                continue
            loss = self._distance(y, ridge_targets(regressors, y, valid))
            if float(loss.detach()) > self.max_loss:
                continue
            total = weight * loss if total is None else total + weight * loss
            used = True
        return total if used else None

    def _ndvi(self, x: Tensor) -> Tensor:
        """NDVI of the observed bands (from reflectance when the statistics are known)."""
        red, nir = x[2], x[3]
        if self.normalisation is not None:
            mean, std = self.normalisation.s2_mean, self.normalisation.s2_std
            red = red * std[RED] + mean[RED]
            nir = nir * std[NIR] + mean[NIR]
        return (nir - red) / (nir + red).abs().clamp_min(1e-6)

    def __call__(self, split: str, s2_rows: Tensor, targets, selected: Tensor) -> Tensor | None:
        """``sample_loss``'s extra: the mean over the split's S2 dates that are not skipped."""
        del split  # the same rule for clr and mae
        values, clear = targets.values[selected], targets.clear[selected]
        losses = [
            loss
            for k in range(len(values))
            if (loss := self.date_loss(values[k], clear[k], s2_rows[k])) is not None
        ]
        return torch.stack(losses).mean() if losses else None
