"""Digital Mask: reconstruction, rendering, statuses, and its fidelity metrics (eyelid / eyeball error)."""

import numpy as np
import pytest

from mema.baselines.digital_mask import DigitalMask
from mema.baselines.digital_mask_model import (
    EYES,
    EYEBALL_RADIUS_PER_EYE_WIDTH,
    face_frame,
    face_triangles,
    fit_eyeball,
    fit_eyelids,
    reconstruct,
)
from mema.baselines.digital_mask_render import SKIN, rasterise
from mema.faces.landmarks import FaceLandmarks, LandmarkDetector
from mema.methods import get_method
from mema.metrics.geometry import EYELID_POINTS, IRIS_POINTS, eyeball_error, eyelid_error, gaze_angles


@pytest.fixture(scope="module")
def method():
    m = DigitalMask()
    yield m
    m.close()


@pytest.fixture(scope="module")
def detector():
    with LandmarkDetector() as det:
        yield det


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return data.astronaut()[20:320, 60:360].copy()  # a real photo, the face ~100 px wide


@pytest.fixture(scope="module")
def dcgan_faces():
    from mema.generation.dcgan import FaceGenerator

    return FaceGenerator(128).generate(np.random.default_rng(5).standard_normal((6, 100)))


@pytest.fixture(scope="module")
def astro_points(method, astronaut):
    pts = method._det().detect_xyz(astronaut)
    assert pts is not None
    return pts


def test_registered_with_typed_metadata():
    m = get_method("digital-mask")
    assert m.info.name == "digital-mask" and not m.info.reversible and m.info.key_scheme == "none"
    assert "Nature Medicine" in m.info.paper and m.info.trained_on and m.info.licence


def test_triangulation_is_mediapipes_closed_mesh():
    tris = face_triangles()
    assert tris.shape == (852, 3) and tris.min() == 0 and tris.max() == 467
    edges = np.sort(np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert counts.max() == 2  # a manifold surface: no edge is shared by three triangles
    assert len(np.unique(tris)) == 468


def test_rasteriser_keeps_the_nearest_surface_and_covers_the_area():
    xy = np.array([[2, 2], [30, 2], [2, 30], [5, 5], [40, 5], [5, 40]], float)
    z = np.array([5, 5, 5, 1, 1, 1], float)  # the second triangle is nearer
    attr = np.array([[0], [0], [0], [1], [1], [1]], float)
    zbuf, val, tid = rasterise(xy, z, attr, np.array([[0, 1, 2], [3, 4, 5]]), (48, 48))
    assert tid[10, 10] == 1 and val[10, 10, 0] == pytest.approx(1) and zbuf[10, 10] == pytest.approx(1)
    assert tid[3, 3] == 0 and tid[45, 45] == -1 and np.isinf(zbuf[45, 45])
    area = 0.5 * 35 * 35
    assert abs((tid == 1).sum() - area) / area < 0.05


def test_eyelid_cubic_fit_recovers_a_cubic_lid(astro_points):
    pts = astro_points.copy()
    side = "left"
    a, b = pts[EYES[side]["corners"][0], :2], pts[EYES[side]["corners"][1], :2]
    if a[0] > b[0]:
        a, b = b, a
    width = np.linalg.norm(b - a)
    u = (b - a) / width
    v = np.array([-u[1], u[0]])
    lid = lambda t: -0.9 * t * (1 - t) * (1 + 0.3 * t)  # a cubic through both corners  # noqa: E731
    for i, pid in enumerate(EYES[side]["upper"]):
        t = i / 8
        pts[pid, :2] = a + t * width * u + lid(t) * width * v
    fit = fit_eyelids(pts[:, :2], side)
    upper_ids = list(EYES[side]["upper"])[1:-1]  # the corners belong to both lids
    model = {pid: p for pid, p in zip(fit.landmark_ids, fit.model_points)}
    err = max(np.linalg.norm(model[pid] - pts[pid, :2]) for pid in upper_ids)
    assert err < 1e-6 * width + 1e-9
    assert np.linalg.norm(fit.upper[0] - a) < 0.02 * width and np.linalg.norm(fit.upper[-1] - b) < 0.02 * width
    assert fit.opening > 0.1


def test_eyeball_fit_recovers_a_known_rotation(astro_points):
    """Iris points generated from the sphere model at a known rotation; the fit must find it."""
    from mema.baselines.digital_mask_model import EYEBALL_DEPTH_PER_RADIUS, _gaze

    v = astro_points.copy()
    frame = face_frame(v)
    eye = EYES["left"]
    a, b = v[eye["corners"][0]], v[eye["corners"][1]]
    re = EYEBALL_RADIUS_PER_EYE_WIDTH * np.linalg.norm(b - a)
    centre = (a + b) / 2 - EYEBALL_DEPTH_PER_RADIUS * re * frame[:, 2]
    alpha = np.arcsin(0.45)
    g = _gaze(np.radians(18), np.radians(-9), frame)
    e1 = frame[:, 0] - (frame[:, 0] @ g) * g
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(g, e1)
    v[eye["iris"]] = centre + re * np.cos(alpha) * g
    for k, pid in enumerate(eye["ring"]):
        beta = k * np.pi / 2 + 0.3
        v[pid] = centre + re * (np.cos(alpha) * g + np.sin(alpha) * (np.cos(beta) * e1 + np.sin(beta) * e2))
    fit = fit_eyeball(v, "left", frame)
    assert fit.theta == pytest.approx(18, abs=1.0) and fit.phi == pytest.approx(-9, abs=1.0)
    assert np.linalg.norm(fit.model_points - v[[eye["iris"], *eye["ring"]], :2], axis=1).max() < 0.05 * re


def test_dcgan_faces_keep_shape_and_gaze_but_lose_texture(method, detector, dcgan_faces):
    out = method.anonymize(dcgan_faces)
    assert out.shape == dcgan_faces.shape and out.dtype == np.uint8
    assert len(method.last_statuses) == len(dcgan_faces) == len(method.last_fits)
    done = [i for i, s in enumerate(method.last_statuses) if s in ("ok", "eyes_closed")]
    assert len(done) >= 4
    lids, balls = [], []
    for i in done:
        fit = method.last_fits[i]
        assert fit["eyelid_are"] < 0.02  # the paper's own measure: model vs detected landmarks
        lo, lr = detector.detect(dcgan_faces[i]), detector.detect(out[i])
        if lo is None or lr is None:
            continue
        lids.append(eyelid_error(lo, lr))
        balls.append(eyeball_error(lo, lr))
        # the face is drawn in the neutral albedo: its pixels are grey-beige, not the input's colours
        x, y = np.round(lo.points[4]).astype(int)  # below the nose tip
        px = out[i][y, x].astype(float)
        assert np.abs(px / px.sum() - SKIN / SKIN.sum()).max() < 0.02
    assert len(lids) >= 3
    assert np.mean(lids) < 0.05 and np.mean(balls) < 0.05


def test_real_photo_fidelity_and_identity(method, detector, astronaut):
    from mema.faces.recognisers import SFace

    out = method.anonymize(astronaut[None])[0]
    assert method.last_statuses == ["ok"]
    lo, lr = detector.detect(astronaut), detector.detect(out)
    assert lr is not None
    assert eyelid_error(lo, lr) < 0.04 and eyeball_error(lo, lr) < 0.04
    rec = SFace()
    d = float(np.linalg.norm(rec.embed(astronaut, lo) - rec.embed(out, lo)))
    assert d > rec.info.reference_threshold  # no longer the same person for SFace


def test_gaze_follows_the_iris(method, detector, astro_points, astronaut):
    """Move both irises towards image-right in the landmarks: the rendered eyes must look that way."""
    from mema.baselines.digital_mask_render import render

    yaws = []
    for shift in (-0.15, 0.15):
        pts = astro_points.copy()
        for side in ("left", "right"):
            c = EYES[side]["corners"]
            width = np.linalg.norm(pts[c[0], :2] - pts[c[1], :2])
            pts[[EYES[side]["iris"], *EYES[side]["ring"]], 0] += shift * width
        img = render(reconstruct(pts), astronaut.shape[:2])
        lm = detector.detect(img)
        assert lm is not None
        yaws.append(gaze_angles(lm)[0])
    assert yaws[1] - yaws[0] > 5  # degrees


def test_closed_eyes_are_drawn_shut(method, astro_points, astronaut):
    from mema.baselines.digital_mask_render import SCLERA, render

    pts = astro_points.copy()
    for side in ("left", "right"):
        up, lo = EYES[side]["upper"], EYES[side]["lower"]
        mid = (pts[list(up)] + pts[list(lo)]) / 2
        pts[list(up)] = pts[list(lo)] = mid
    status, recon = method.classify(pts)
    assert status == "eyes_closed" and all(recon.closed.values()) and recon.eyeballs == {"left": None, "right": None}
    img = render(recon, astronaut.shape[:2]).astype(float)
    c = np.round(astro_points[468, :2]).astype(int)
    patch = img[c[1] - 4 : c[1] + 5, c[0] - 6 : c[0] + 7]
    assert np.abs(patch - SCLERA).sum(-1).min() > 40  # no eye white where the eye was


def test_profile_is_flagged_and_still_rendered(method, astro_points, astronaut):
    from mema.baselines.digital_mask_render import render

    pts = astro_points.copy()
    c = pts[:468].mean(0)
    t = np.radians(70)
    rot = np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])
    pts = (pts - c) @ rot.T + c
    status, recon = method.classify(pts)
    assert status == "profile" and abs(recon.yaw) > 45
    img = render(recon, astronaut.shape[:2])
    assert (img.sum(-1) > 0).mean() > 0.02


def test_no_face_gives_the_plain_background_and_tiny_faces_render(method):
    from skimage import data

    blank = np.full((2, 96, 96, 3), 128, np.uint8)
    blank[1] = np.random.default_rng(0).integers(0, 256, (96, 96, 3))
    out = method.anonymize(blank)
    assert method.last_statuses == ["no_face", "no_face"] and method.last_fits == [None, None]
    assert (out == 0).all()  # the background only: nothing of the input survives
    tiny = np.repeat((data.lfw_subset()[:4] * 255).round().astype(np.uint8)[..., None], 3, axis=3)  # 25 x 25 px
    before = method.status_counts["tiny_face"]
    out = method.anonymize(tiny)
    assert out.shape == tiny.shape
    assert method.status_counts["tiny_face"] - before == sum(s == "tiny_face" for s in method.last_statuses) >= 2
    for o, s in zip(out, method.last_statuses):
        assert (o.sum(-1) > 0).any() == (s != "no_face")


def test_degenerate_landmarks_fail_to_the_background(method):
    status, recon = method.classify(np.zeros((478, 3)))
    assert status == "failed" and recon is None


def test_bad_batches_are_refused(method):
    with pytest.raises(ValueError, match="uint8"):
        method.anonymize(np.zeros((1, 64, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        method.anonymize(np.zeros((64, 64, 3), np.uint8))


# --- the fidelity metrics ----------------------------------------------------------------------------------
def _random_face(seed=0):
    r = np.random.default_rng(seed)
    pts = r.uniform(0, 100, (478, 2))
    pts[[33, 133]] = [[20, 40], [40, 40]]
    pts[[263, 362]] = [[80, 40], [60, 40]]  # eye centres 30 and 70: inter-ocular distance 40
    return pts


def test_eyelid_and_eyeball_error_are_normalised_point_errors():
    a = _random_face()
    assert eyelid_error(a, a) == 0 and eyeball_error(a, a) == 0
    b = a.copy()
    b[list(IRIS_POINTS)] += [3.0, 4.0]  # 5 px on every iris point, 12.5% of 40 px
    assert eyeball_error(a, b) == pytest.approx(0.125) and eyelid_error(a, b) == 0
    c = a.copy()
    c[EYELID_POINTS[0]] += [0, 8.0]
    assert eyelid_error(a, c) == pytest.approx(8 / 40 / 32)
    assert eyelid_error(a, c, reduce="max") == pytest.approx(8 / 40)
    assert eyelid_error(FaceLandmarks(a.astype(np.float32)), FaceLandmarks(c.astype(np.float32))) == pytest.approx(8 / 40 / 32, rel=1e-5)
    with pytest.raises(ValueError):
        eyelid_error(a, c, reduce="median")
    with pytest.raises(ValueError):
        eyeball_error(a[:100], a[:100])
    d = a.copy()
    d[[33, 133, 263, 362]] = 50.0
    with pytest.raises(ValueError, match="inter-ocular"):
        eyelid_error(d, d)
