"""Property tests (hypothesis) of the agreement score, the bootstrap interval and Holm's correction
in ``metrics.stats``, and the map shapes of a few methods: random maps with ties, sparse and constant
maps, sizes 1x1 to 512x512, checked against a NumPy reference and the definitions' invariants.
Small example counts and no deadline, so the file runs in seconds on a loaded machine."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from case_saliency.core.maps import constant_maps
from case_saliency.metrics import top_count, top_mask, topk_agreement
from case_saliency.metrics.stats import holm, median_difference

FEW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KINDS = ("continuous", "ties", "sparse", "constant", "negative")
TIES = ("index", "reverse", "authors", "inclusive")
SPARSE = ("positive", "pad")


def random_map(kind: str, height: int, width: int, seed: int) -> torch.Tensor:
    """An (H, W) float32 map: continuous values, few distinct values (ties), mostly zeros with a few
    positive pixels, one constant value, or all negative (zero after ReLU)."""
    generator = torch.Generator().manual_seed(seed)
    shape = (height, width)
    if kind == "continuous":
        return torch.randn(shape, generator=generator)
    if kind == "ties":
        return torch.randint(-1, 3, shape, generator=generator).float()
    if kind == "sparse":
        return torch.rand(shape, generator=generator) * (torch.rand(shape, generator=generator) < 0.02)
    if kind == "constant":
        return torch.full(shape, float(torch.randint(-2, 3, (1,), generator=generator)))
    return -torch.rand(shape, generator=generator) - 0.1


sizes = st.tuples(st.integers(1, 512), st.integers(1, 512)) | st.tuples(st.integers(1, 6), st.integers(1, 6))
maps_pairs = st.builds(lambda kinds, size, seeds: (random_map(kinds[0], *size, seeds[0]),
                                                   random_map(kinds[1], *size, seeds[1])),
                       st.tuples(st.sampled_from(KINDS), st.sampled_from(KINDS)), sizes,
                       st.tuples(st.integers(0, 2**16), st.integers(0, 2**16)))
percents = st.sampled_from([0.1, 1.0, 5.0, 12.5, 50.0, 99.0, 100.0]) | st.floats(0.01, 100.0)


def degenerate(a: torch.Tensor) -> bool:
    return bool(constant_maps(a.clamp_min(0)[None])[0])


def reference_mask(a: torch.Tensor, k: float, ties: str, sparse: str) -> np.ndarray:
    """The top set by definition, in NumPy: a stable descending sort (of the reversed pixels for
    "reverse"), the first n; "inclusive": every pixel at least the n-th value; "positive": only > 0."""
    flat = np.maximum(a.numpy().astype(np.float64).ravel(), 0.0)
    n = top_count(a.shape[0], a.shape[1], k)
    mask = np.zeros(flat.size, dtype=bool)
    if ties == "inclusive":
        mask = flat >= np.sort(flat)[::-1][n - 1]
    elif ties == "reverse":
        order = np.argsort(-flat[::-1], kind="stable")[:n]
        mask[flat.size - 1 - order] = True
    else:
        mask[np.argsort(-flat, kind="stable")[:n]] = True
    if sparse == "positive":
        mask &= flat > 0
    return mask.reshape(a.shape)


@FEW
@given(maps_pairs, percents, st.sampled_from(TIES), st.sampled_from(SPARSE))
def test_agreement_is_bounded_symmetric_and_nan_exactly_when_undefined(pair, k, ties, sparse):
    a, b = pair
    ab = float(topk_agreement(a, b, k, ties=ties, sparse=sparse))
    ba = float(topk_agreement(b, a, k, ties=ties, sparse=sparse))
    undefined = degenerate(a) or degenerate(b) or (sparse == "positive" and not ((a > 0).any() or (b > 0).any()))
    assert math.isnan(ab) == undefined
    if not undefined:
        assert 0.0 <= ab <= 100.0
    if not (ties == "inclusive" and sparse == "pad"):  # the one policy that divides by |S_a| of a set that varies
        assert ab == ba or (math.isnan(ab) and math.isnan(ba))


@FEW
@given(maps_pairs, percents, st.sampled_from(TIES), st.sampled_from(SPARSE))
def test_identical_maps_agree_fully_and_constant_ones_never(pair, k, ties, sparse):
    a, _ = pair
    same = float(topk_agreement(a, a.clone(), k, ties=ties, sparse=sparse))
    if degenerate(a) or (sparse == "positive" and not (a > 0).any()):
        assert math.isnan(same)
    else:
        assert same == 100.0
    flat = torch.full_like(a, 0.7)
    assert math.isnan(float(topk_agreement(a, flat, k, ties=ties, sparse=sparse)))
    assert math.isnan(float(topk_agreement(flat, a, k, ties=ties, sparse=sparse)))


@FEW
@given(maps_pairs, percents, st.sampled_from(("index", "reverse", "inclusive")), st.sampled_from(SPARSE))
def test_top_sets_match_the_numpy_definition(pair, k, ties, sparse):
    a, b = pair
    masks = top_mask(torch.stack([a, b]), k, ties=ties, sparse=sparse).numpy()
    for mask, m in zip(masks, (a, b), strict=True):
        expected = reference_mask(m, k, ties, sparse)
        assert np.array_equal(mask, expected)
        values = m.clamp_min(0).numpy()
        if mask.any() and (~mask).any() and sparse == "pad":  # a top set: no pixel outside it is larger
            assert values[mask].min() >= values[~mask].max()
    shared, size_a, size_b = (reference_mask(a, k, ties, sparse) & reference_mask(b, k, ties, sparse)).sum(), \
        reference_mask(a, k, ties, sparse).sum(), reference_mask(b, k, ties, sparse).sum()
    size = max(size_a, size_b) if sparse == "positive" else size_a
    got = float(topk_agreement(a, b, k, ties=ties, sparse=sparse))
    if not math.isnan(got):
        assert got == pytest.approx(shared / size * 100.0, abs=1e-4)


@FEW
@given(maps_pairs, percents, st.sampled_from(SPARSE))
def test_tie_policies_relate_as_defined(pair, k, sparse):
    a, _ = pair
    index = top_mask(a[None], k, ties="index", sparse=sparse)[0]
    reverse = top_mask(a[None], k, ties="reverse", sparse=sparse)[0]
    inclusive = top_mask(a[None], k, ties="inclusive", sparse=sparse)[0]
    authors = top_mask(a[None], k, ties="authors", sparse=sparse)[0]
    # reversing the pixel order (both axes: row-major order backwards) swaps "index" and "reverse"
    assert torch.equal(reverse, top_mask(a.flip(0, 1)[None], k, ties="index", sparse=sparse)[0].flip(0, 1))
    n = top_count(*a.shape, k)
    for mask in (index, reverse, authors):
        assert bool((mask <= inclusive).all())  # inclusive holds every pixel tied with the n-th
        if sparse == "pad":
            assert int(mask.sum()) == n
        else:
            assert int(mask.sum()) == min(n, int((a > 0).sum()))


@FEW
@given(maps_pairs, percents, st.sampled_from(TIES), st.integers(-3, 3))
def test_agreement_depends_only_on_the_order_of_values(pair, k, ties, power):
    a, b = pair
    scale = 2.0 ** power  # exact in floating point: no ties made or broken
    scaled = topk_agreement(a * scale, b * (2.0 ** -power), k, ties=ties)
    plain = topk_agreement(a, b, k, ties=ties)
    assert torch.equal(scaled.isnan(), plain.isnan())
    assert torch.equal(scaled.nan_to_num(-1.0), plain.nan_to_num(-1.0))


@FEW
@given(st.integers(0, 2**16), st.integers(1, 9), st.integers(1, 9), percents)
def test_batched_agreement_equals_pair_by_pair(seed, height, width, k):
    generator = torch.Generator().manual_seed(seed)
    a = torch.randint(-1, 3, (4, height, width), generator=generator).float()
    b = torch.randn(4, height, width, generator=generator)
    batched = topk_agreement(a, b, k)
    single = torch.stack([topk_agreement(a[i], b[i], k) for i in range(4)])
    assert batched.shape == (4,)
    assert torch.equal(batched.nan_to_num(-1.0), single.nan_to_num(-1.0))


# ---------------------------------------------------------------- the bootstrap interval, Holm


samples = st.lists(st.floats(-1e3, 1e3, allow_nan=False) | st.just(float("nan")), min_size=0, max_size=40)


@FEW
@given(samples, st.integers(0, 2**16), st.sampled_from([0.8, 0.9, 0.95]))
def test_median_difference_interval_is_ordered_within_the_data_and_seeded(values, seed, confidence):
    a = np.asarray(values, dtype=np.float64)
    b = np.zeros_like(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SciPy warns on degenerate resamples
        effect = median_difference(a, b, confidence=confidence, resamples=200, seed=seed)
        again = median_difference(a, b, confidence=confidence, resamples=200, seed=seed)
        wider = median_difference(a, b, confidence=0.99, resamples=200, seed=seed)
    finite = a[np.isfinite(a)]
    assert effect.n == finite.size
    assert np.array_equal([effect.median, effect.low, effect.high], [again.median, again.low, again.high],
                          equal_nan=True)
    if finite.size == 0:
        assert math.isnan(effect.median)
        return
    assert effect.median == pytest.approx(float(np.median(finite)))
    if finite.size < 2:
        assert math.isnan(effect.low) and math.isnan(effect.high)
        return
    assert finite.min() <= effect.low <= effect.high <= finite.max()
    # the same resamples at a higher confidence: an interval that holds this one
    assert wider.low <= effect.low + 1e-9 and wider.high >= effect.high - 1e-9


@FEW
@given(st.lists(st.floats(-50, 50, allow_nan=False), min_size=2, max_size=30), st.floats(-100, 100),
       st.integers(0, 2**16))
def test_median_difference_moves_with_a_shift_and_flips_with_the_order(values, shift, seed):
    a = np.asarray(values)
    b = np.linspace(0, 1, a.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = median_difference(a, b, resamples=200, seed=seed)
        moved = median_difference(a + shift, b, resamples=200, seed=seed)
        flipped = median_difference(b, a, resamples=200, seed=seed)
    assert moved.median == pytest.approx(base.median + shift, abs=1e-6)
    assert moved.low == pytest.approx(base.low + shift, abs=1e-6)
    assert moved.high == pytest.approx(base.high + shift, abs=1e-6)
    assert flipped.median == pytest.approx(-base.median, abs=1e-9)
    assert (flipped.low, flipped.high) == pytest.approx((-base.high, -base.low), abs=1e-6)


@FEW
@given(st.lists(st.floats(0, 1) | st.just(float("nan")), min_size=0, max_size=25))
def test_holm_adjusted_pvalues_are_bounded_monotone_and_keep_nan(pvalues):
    p = np.asarray(pvalues, dtype=np.float64)
    adjusted = holm(p)
    finite = np.isfinite(p)
    assert np.array_equal(np.isnan(adjusted), ~finite)
    m = int(finite.sum())
    kept, raw = adjusted[finite], p[finite]
    assert np.all(kept >= raw - 1e-12) and np.all(kept <= 1.0)
    assert np.all(kept <= np.minimum(raw * m, 1.0) + 1e-12)  # never more than Bonferroni
    order = np.argsort(raw, kind="stable")
    assert np.all(np.diff(kept[order]) >= -1e-12)  # the order of the p-values is kept


# ---------------------------------------------------------------- map shapes of methods


class TinyNet(nn.Module):
    """Any input size -> 5 logits; the target layer ``features.2`` has half the input's resolution."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, stride=2, padding=1),
                                      nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def tiny_net() -> TinyNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return TinyNet().eval()


@FEW
@given(st.sampled_from(["gradcam", "gradcam++", "layercam", "xgradcam", "hirescam", "finercam", "case",
                        "scorecam", "eigencam"]),
       st.integers(1, 3), st.integers(2, 40), st.integers(2, 40), st.sampled_from(["top1", "top2", "topk:2"]),
       st.integers(0, 2**16), st.booleans())
def test_map_shapes_follow_the_images_and_targets(name, batch, height, width, targets, seed, upsample):
    from case_saliency.methods import get_method

    images = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        method = get_method(name, tiny_net(), target_layer="features.2")
        result = method.explain(images, targets, upsample=upsample, normalize=True)
    size = (height, width) if upsample else ((height + 1) // 2, (width + 1) // 2)
    lead = (batch, 2) if targets == "topk:2" else (batch,)
    assert tuple(result.maps.shape) == lead + size
    assert tuple(result.targets.shape) == lead and tuple(result.degenerate.shape) == lead
    assert bool(torch.isfinite(result.maps).all())
    assert float(result.maps.min()) >= 0.0 and float(result.maps.max()) <= 1.0 + 1e-6
    flat = result.maps.flatten(-2)
    assert bool((flat[result.degenerate] == 0).all())  # a constant map is all zero, never noise
