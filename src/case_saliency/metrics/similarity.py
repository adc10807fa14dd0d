"""Secondary similarity measures between two maps of the same image, for comparison with other
literature: Spearman rank correlation and SSIM. Both are vectorised over a batch of (B, H, W) pairs.
"""

from __future__ import annotations


import torch
from torch import Tensor

from ..core.maps import constant_maps, minmax_normalise


def average_ranks(values: Tensor) -> Tensor:
    """Ranks 1..N along the last dim of (B, N), tied values sharing their average rank
    (``scipy.stats.rankdata(method="average")``), vectorised over the batch."""
    batch, n = values.shape
    sorted_vals, order = torch.sort(values, dim=1, stable=True)
    # A tie group starts wherever the sorted value changes; number the groups across the batch.
    starts = torch.ones_like(sorted_vals, dtype=torch.bool)
    starts[:, 1:] = sorted_vals[:, 1:] != sorted_vals[:, :-1]
    group = torch.cumsum(starts.flatten().long(), 0) - 1  # (B*N,), rows never share a group
    positions = torch.arange(1, n + 1, dtype=torch.float64, device=values.device).repeat(batch)
    groups = int(group[-1]) + 1
    total = torch.zeros(groups, dtype=torch.float64, device=values.device).index_add_(0, group, positions)
    count = torch.zeros(groups, dtype=torch.float64, device=values.device).index_add_(
        0, group, torch.ones_like(positions))
    sorted_ranks = (total / count)[group].view(batch, n)
    return torch.empty_like(sorted_ranks).scatter_(1, order, sorted_ranks)


def _rankable(maps: Tensor) -> Tensor:
    """float32 and float64 maps as they are; other dtypes (half, integers) as float64."""
    maps = maps.detach()
    return maps if maps.dtype in (torch.float32, torch.float64) else maps.double()


def spearman(maps_a: Tensor, maps_b: Tensor) -> Tensor:
    """Spearman rank correlation between the pixels of two maps: (B, H, W) x 2 -> (B,).

    Ties get average ranks, as ``scipy.stats.spearmanr``. NaN where either map is constant.
    NaN pixels count as 0.
    """
    if maps_a.shape != maps_b.shape:
        raise ValueError(f"maps_a {tuple(maps_a.shape)} and maps_b {tuple(maps_b.shape)} differ in shape")
    # Ranks from the maps' own dtype (sorting float32 gives the float64 order of the same values, faster)
    a = torch.nan_to_num(_rankable(maps_a), nan=0.0).flatten(-2)
    b = torch.nan_to_num(_rankable(maps_b), nan=0.0).flatten(-2)
    lead = a.shape[:-1]
    ra = average_ranks(a.reshape(-1, a.shape[-1]))
    rb = average_ranks(b.reshape(-1, b.shape[-1]))
    ra = ra - ra.mean(1, keepdim=True)
    rb = rb - rb.mean(1, keepdim=True)
    rho = (ra * rb).sum(1) / (ra.pow(2).sum(1).sqrt() * rb.pow(2).sum(1).sqrt())
    constant = constant_maps(a.view(*lead, 1, -1)) | constant_maps(b.view(*lead, 1, -1))
    rho = torch.where(constant.flatten(), torch.full_like(rho, float("nan")), rho)
    return rho.float().view(lead)


def gaussian_window(sigma: float = 1.5, truncate: float = 3.5) -> Tensor:
    """Normalised 1-D Gaussian weights of radius ``int(truncate * sigma + 0.5)`` (as SciPy's
    ``gaussian_filter``, which scikit-image's SSIM uses)."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def _band(window: Tensor, n: int) -> Tensor:
    """(n - S + 1, n) matrix whose row i holds the S-tap ``window`` at columns i..i+S-1: ``band @ x``
    filters x's rows ('valid' positions only)."""
    size = window.numel()
    rows = n - size + 1
    columns = torch.arange(rows, device=window.device)[:, None] + torch.arange(size, device=window.device)
    band = torch.zeros(rows, n, dtype=window.dtype, device=window.device)
    return band.scatter_(1, columns, window.expand(rows, size))


def ssim(maps_a: Tensor, maps_b: Tensor, *, normalize: bool = True, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03, nan_for_constant: bool = True) -> Tensor:
    """Mean structural similarity (Wang et al., 2004) of two maps: (B, H, W) x 2 -> (B,).

    Gaussian window (sigma 1.5, 11x11), population covariances, data range 1, statistics averaged
    over the pixels whose window lies inside the map: the same numbers as
    ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1)``. normalize: min-max scale each map to [0, 1]
    first (constant maps become all zero), so maps of any scale compare. Maps smaller than the
    window are an error. nan_for_constant: NaN where either map is constant, as the agreement
    (otherwise two all-zero maps would score a perfect 1).
    """
    if maps_a.shape != maps_b.shape or maps_a.ndim != 3:
        raise ValueError(f"ssim needs two (B, H, W) maps of one shape; got {tuple(maps_a.shape)} "
                         f"and {tuple(maps_b.shape)}")
    a = torch.nan_to_num(maps_a.detach().double(), nan=0.0)
    b = torch.nan_to_num(maps_b.detach().double(), nan=0.0)
    if normalize:
        a, b = minmax_normalise(a), minmax_normalise(b)
    w1 = gaussian_window(sigma).to(a.device)
    size = w1.numel()
    if min(a.shape[-2:]) < size:
        raise ValueError(f"maps of size {tuple(a.shape[-2:])} are smaller than the {size}x{size} SSIM "
                         "window; pass a smaller sigma")
    # The five local statistics in one separable 'valid' filter (only windows inside the map), as two
    # float32 matrix products with banded window matrices (BLAS: ~10x faster than a float64 conv2d on
    # a CPU); the statistics are then combined in float64 (within 1e-6 of scikit-image on CAM maps).
    stack = torch.stack([a, b, a * a, b * b, a * b], dim=1).float()  # (B, 5, H, W)
    window = w1.float()
    blurred = (_band(window, a.shape[-2]) @ stack @ _band(window, a.shape[-1]).T).double()
    mu_a, mu_b, aa, bb, ab = blurred.unbind(1)
    c1, c2 = (k1 * 1.0) ** 2, (k2 * 1.0) ** 2
    var_a = aa - mu_a ** 2
    var_b = bb - mu_b ** 2
    cov = ab - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)
    value = (num / den).mean(dim=(-2, -1)).float()
    if nan_for_constant:
        constant = constant_maps(maps_a.detach().float()) | constant_maps(maps_b.detach().float())
        value = torch.where(constant, torch.full_like(value, float("nan")), value)
    return value


__all__ = ["average_ranks", "spearman", "ssim", "gaussian_window"]
