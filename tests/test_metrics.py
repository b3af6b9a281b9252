"""Each metric against a reference implementation (scikit-learn, skimage, scipy) on random data."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score, jaccard_score, recall_score, roc_auc_score
from skimage.metrics import peak_signal_noise_ratio

from mema.metrics.classification import binary_auroc, cohen_kappa, macro_auroc, per_class_recall, sensitivity_specificity, top1
from mema.metrics.identity import accept_rate, calibrate_threshold, l2_distance, pairwise_l2, rank1_match
from mema.metrics.image import psnr, ssim
from mema.metrics.segmentation import dice, jaccard
from mema.metrics.stats import bootstrap_ci

rng = np.random.default_rng(0)


@pytest.mark.parametrize("seed", range(5))
def test_classification_against_sklearn(seed):
    r = np.random.default_rng(seed)
    y = r.integers(0, 8, 300)
    pred = np.where(r.random(300) < 0.6, y, r.integers(0, 8, 300))
    proba = r.dirichlet(np.ones(8), 300)
    proba[np.arange(300), y] += r.random(300)
    proba /= proba.sum(1, keepdims=True)
    assert top1(y, pred) == pytest.approx(accuracy_score(y, pred))
    assert cohen_kappa(y, pred, 8) == pytest.approx(cohen_kappa_score(y, pred))
    np.testing.assert_allclose(per_class_recall(y, pred, 8), recall_score(y, pred, average=None, labels=range(8)))
    assert macro_auroc(y, proba) == pytest.approx(roc_auc_score(y, proba, multi_class="ovr", average="macro"))
    sens, spec = sensitivity_specificity(y, pred)
    assert sens == pytest.approx(recall_score(y != 0, pred != 0))
    assert spec == pytest.approx(recall_score(y == 0, pred == 0))


def test_auroc_with_ties_matches_sklearn():
    y = rng.integers(0, 2, 200)
    s = rng.integers(0, 5, 200).astype(float)  # many ties
    assert binary_auroc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert np.isnan(binary_auroc(np.ones(5), np.arange(5)))


def test_kappa_edge_cases():
    assert cohen_kappa(np.zeros(10, int), np.zeros(10, int), 8) == 1.0
    a = rng.integers(0, 3, 50)
    assert cohen_kappa(a, a, 8) == pytest.approx(1.0)


def test_psnr_and_ssim_against_skimage():
    a = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255))
    assert psnr(a, a) == float("inf")
    assert ssim(a, a) == pytest.approx(1.0) and 0 < ssim(a, b) < 1


def test_dice_jaccard_against_scipy_and_sklearn():
    from scipy.spatial.distance import dice as scipy_dice

    for _ in range(5):
        ref, pred = rng.random((32, 32)) < 0.3, rng.random((32, 32)) < 0.3
        assert dice(ref, pred) == pytest.approx(1 - scipy_dice(ref.ravel(), pred.ravel()))
        assert jaccard(ref, pred) == pytest.approx(jaccard_score(ref.ravel(), pred.ravel()))
    empty = np.zeros((4, 4), bool)
    assert np.isnan(dice(empty, empty)) and np.isnan(jaccard(empty, empty))
    assert dice(empty, ~empty) == 0.0


def test_identity_metrics():
    e = rng.normal(size=(20, 16))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    from scipy.spatial.distance import cdist

    np.testing.assert_allclose(pairwise_l2(e, e[:5]), cdist(e, e[:5]), atol=1e-6)
    np.testing.assert_allclose(l2_distance(e, e[::-1]), np.linalg.norm(e - e[::-1], axis=1))
    ids = np.arange(20)
    assert rank1_match(e, ids, e, ids).all()
    shuffled = rank1_match(e, ids, e, np.roll(ids, 1))
    assert not shuffled.any()


def test_threshold_calibration_meets_far():
    impostor = rng.uniform(0.5, 1.5, 10_000)
    for far in (0.01, 0.001):
        t = calibrate_threshold(impostor, far)
        assert accept_rate(impostor, t) <= far
        assert accept_rate(impostor, t + 1e-3) > far - 2e-4  # as loose as allowed


def test_bootstrap_ci_covers_the_mean_and_respects_groups():
    x = rng.normal(1.0, 1.0, 400)
    lo, hi = bootstrap_ci(lambda idx: x[idx].mean(), len(x))
    assert lo < x.mean() < hi and hi - lo == pytest.approx(2 * 1.96 / 20, rel=0.25)
    groups = np.repeat(np.arange(100), 4)
    glo, ghi = bootstrap_ci(lambda idx: x[idx].mean(), len(x), groups=groups)
    assert glo < x.mean() < ghi
    assert bootstrap_ci(lambda idx: 0.0, 1) is None
