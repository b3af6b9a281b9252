"""Digital FaceDefender: avatar bank (search, cache, resume, user folder), fusion, statuses, diagnostic metric."""

import json

import numpy as np
import pytest

from mema.baselines import facedefender_bank as fb
from mema.baselines.facedefender import PERIOCULAR, FaceDefender, avatar_onto_patient, fusion_mask, similarity_lsq
from mema.faces.landmarks import LandmarkDetector
from mema.methods import get_method
from mema.metrics.geometry import (
    diagnostic_distance_error,
    eyeball_error,
    eyelid_error,
    iris_reference_distances,
    strabismus_asymmetry,
)

TINY = fb.BankConfig(per_cell=1, random_candidates=64, climb_steps=2, climb_children=8)


@pytest.fixture(scope="module")
def detector():
    with LandmarkDetector() as det:
        yield det


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return data.astronaut()[20:320, 60:360].copy()


@pytest.fixture(scope="module")
def avatar_folder(tmp_path_factory, detector):
    """Four DCGAN faces (128 px) with a labels.csv: female 30 and 60, male 30 and 60."""
    from mema.generation.dcgan import FaceGenerator
    from mema.imageio import write_png

    root = tmp_path_factory.mktemp("avatars")
    faces = FaceGenerator(128).generate(np.random.default_rng(11).standard_normal((16, 100)))
    found = [f for f in faces if detector.detect(f) is not None][:4]
    assert len(found) == 4
    rows = ["file,sex,age"]
    for k, (img, (sex, age)) in enumerate(zip(found, [("female", 30), ("female", 60), ("male", 30), ("male", 60)])):
        write_png(root / f"a{k}.png", img)
        rows.append(f"a{k}.png,{sex},{age}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def method(avatar_folder):
    m = FaceDefender(bank_dir=avatar_folder, progress=False)
    yield m
    m.close()


def test_registered_with_typed_metadata(monkeypatch):
    monkeypatch.delenv("MEMA_FACEDEFENDER_BANK", raising=False)
    m = get_method("facedefender")
    assert m.info.name == "facedefender" and not m.info.reversible and m.info.key_scheme == "none"
    assert "JMIR" in m.info.paper or "Med Internet Res" in m.info.paper
    assert "research-only" in m.info.licence and m.info.params["avatar_bank"].startswith("dcgan:")


def test_age_bands_and_cell_lookup():
    assert [fb.age_band(a) for a in (0, 9, 10, 34, 35, 79, 80, 99, -3)] == [5, 5, 15, 35, 35, 75, 85, 85, 5]
    img, pts = np.zeros((8, 8, 3), np.uint8), np.zeros((478, 2), np.float32)
    bank = fb.AvatarBank([fb.Avatar("f25", "female", 25, 25, img, pts), fb.Avatar("f65", "female", 65, 66, img, pts),
                          fb.Avatar("m45", "male", 45, 44, img, pts)], "test", {})
    assert bank.lookup("female", 27)[1] == ("female", 25)
    assert bank.lookup("female", 49)[1] == ("female", 65)  # 45 is empty; 65 and 25 are both 20 away: the older wins
    assert bank.lookup("male", 8)[1] == ("male", 45)  # same sex first, however far
    assert bank.lookup(None, None)[0][0].id in ("f25", "f65", "m45")
    assert bank.summary()["female-25"] == 1 and bank.summary()["male-85"] == 0
    with pytest.raises(fb.BankError):
        fb.AvatarBank([], "empty", {})


def test_similarity_fit_is_exact_on_a_similarity():
    r = np.random.default_rng(0)
    src = r.uniform(0, 100, (29, 2))
    t = np.radians(17)
    m = np.array([[1.3 * np.cos(t), -1.3 * np.sin(t), 5.0], [1.3 * np.sin(t), 1.3 * np.cos(t), -7.0]])
    dst = src @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(similarity_lsq(src, dst), m, atol=1e-9)


def test_default_bank_search_fills_cells_caches_and_resumes(monkeypatch, tmp_path):
    monkeypatch.setenv("MEMA_HOME", str(tmp_path / "home"))
    real_finalise = fb._finalise

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(fb, "_finalise", killed)
    with pytest.raises(KeyboardInterrupt):
        fb.build_bank(TINY, progress=False)
    state = fb.bank_folder(TINY) / "search_state.npz"
    n_done = len(np.load(state)["z"])
    assert n_done >= 64
    # the rerun replays the checkpoint: not one candidate is assessed again during the search
    monkeypatch.setattr(fb, "_finalise", real_finalise)
    calls = {"n": 0}
    real_points = fb._Assessor.points

    def counting(self, img):
        calls["n"] += 1
        return real_points(self, img)

    monkeypatch.setattr(fb._Assessor, "points", counting)
    bank = fb.build_bank(TINY, progress=False)
    assert calls["n"] == len(bank.avatars)  # only the finalising pass, once per chosen avatar
    assert not state.exists()
    record = json.loads((fb.bank_folder(TINY) / "bank.json").read_text())
    assert record["candidates_evaluated"] == n_done and record["source"] == bank.source
    assert sum(record["per_cell"].values()) == len(bank.avatars) >= 4
    for a in bank.avatars:
        assert a.image.shape == (128, 128, 3) and a.points.shape == (478, 2) and fb.age_band(a.age) == a.band
        assert len(bank.cells[(a.sex, a.band)]) <= TINY.per_cell
    # cached: a second call reads it back
    again = fb.build_bank(TINY, progress=False)
    assert [a.id for a in again.avatars] == [a.id for a in bank.avatars]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(again.avatars, bank.avatars))


def test_user_folder_uses_labels_and_writes_nothing_there(avatar_folder, method):
    before = sorted(p.name for p in avatar_folder.iterdir())
    bank = method.bank
    assert bank.source.startswith("folder:") and method.info.params["avatar_bank"] == bank.source
    assert {(a.sex, a.band) for a in bank.avatars} == {("female", 35), ("female", 65), ("male", 35), ("male", 65)}
    assert sorted(p.name for p in avatar_folder.iterdir()) == before
    assert str(avatar_folder) not in json.dumps(method.info.model_dump())  # a fingerprint, not the path


def test_bad_user_folders_are_refused_in_one_line(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        FaceDefender(bank_dir=tmp_path / "missing")
    with pytest.raises(ValueError, match="holds no images"):
        FaceDefender(bank_dir=tmp_path)
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "labels.csv").write_text("file,sex,age\na.png,robot,30\n")
    with pytest.raises(fb.BankError, match="sex 'robot'"):
        fb.bank_from_folder(tmp_path, progress=False)


def test_fusion_keeps_the_patients_eyes_and_nothing_else(method, detector, astronaut):
    import cv2

    out = method.anonymize(astronaut[None])[0]
    assert method.last_statuses == ["ok"] and method.last_cells[0] and method.last_avatars[0].startswith("a")
    lo, lr = detector.detect(astronaut), detector.detect(out)
    assert lr is not None
    assert eyelid_error(lo, lr) < 0.04 and eyeball_error(lo, lr) < 0.04
    assert diagnostic_distance_error(lo, lr)["strabismus_asymmetry"] < 0.03
    # outside the fusion mask every pixel is the avatar's (moved onto the patient), none the patient's
    avatar = next(a for a in method.bank.avatars if a.id == method.last_avatars[0])
    p_pts = method._tools()[0].detect_xyz(astronaut)[:, :2]
    warped, m = avatar_onto_patient(avatar.image, avatar.points, p_pts, astronaut.shape[:2])
    mask = fusion_mask(p_pts, avatar.points @ m[:, :2].T + m[:, 2], astronaut.shape[:2], method.feather)
    outside = mask == 0
    assert 0.5 < outside.mean() < 0.98
    assert np.abs(out[outside].astype(int) - warped[outside].astype(int)).max() <= 1
    # inside it, the patient's own pixels, colour-corrected (Earl's correction carries the avatar's low
    # frequencies): the detail there is the patient's, not the avatar's
    inside = mask > 0.999
    detail = lambda x: (x.astype(float) - cv2.GaussianBlur(x, (0, 0), 2.0).astype(float)).mean(-1)[inside]  # noqa: E731
    assert np.corrcoef(detail(out), detail(astronaut))[0, 1] > 0.8
    assert abs(np.corrcoef(detail(out), detail(warped))[0, 1]) < 0.5


def test_identity_moves_away(method, detector, astronaut):
    """Only the periocular region is the patient's: SFace moves far from the original (the paper's own
    ArcFace similarity was 0.31, i.e. L2 ~1.17 on unit vectors), much further than a mild blur does."""
    import cv2

    from mema.faces.recognisers import SFace

    out = method.anonymize(astronaut[None])[0]
    lo = detector.detect(astronaut)
    rec = SFace()
    e0 = rec.embed(astronaut, lo)
    blurred = cv2.GaussianBlur(astronaut, (0, 0), 1.5)
    assert np.linalg.norm(e0 - rec.embed(out, lo)) > 0.9 > np.linalg.norm(e0 - rec.embed(blurred, lo)) + 0.4


def test_statuses_no_face_and_tiny_faces(method):
    from skimage import data

    blank = np.full((1, 96, 96, 3), 128, np.uint8)
    before = method.status_counts["no_face"]
    out = method.anonymize(blank)[0]
    assert method.last_statuses == ["no_face"] and method.status_counts["no_face"] == before + 1
    default = method.bank.default()
    assert method.last_avatars == [default.id]
    import cv2

    assert np.array_equal(out, cv2.resize(default.image, (96, 96), interpolation=cv2.INTER_AREA))
    tiny = np.repeat((data.lfw_subset()[:4] * 255).round().astype(np.uint8)[..., None], 3, axis=3)
    out = method.anonymize(tiny)
    assert out.shape == tiny.shape and len(method.last_statuses) == 4
    assert sum(s == "tiny_face" for s in method.last_statuses) >= 2
    with pytest.raises(ValueError, match="uint8"):
        method.anonymize(np.zeros((1, 32, 32, 3), np.float64))


def test_profile_and_closed_eyes_are_flagged(method, astronaut):
    from mema.baselines.digital_mask_model import EYES

    det = method._tools()[0]
    pts = det.detect_xyz(astronaut)
    assert method._status(pts) == "ok"
    shut = pts.copy()
    for side in ("left", "right"):
        up, lo = list(EYES[side]["upper"]), list(EYES[side]["lower"])
        shut[up] = shut[lo] = (shut[up] + shut[lo]) / 2
    assert method._status(shut) == "eyes_closed"
    c, t = pts[:468].mean(0), np.radians(65)
    rot = np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])
    assert method._status((pts - c) @ rot.T + c) == "profile"


# --- the diagnostic measure ------------------------------------------------------------------------------------
def _eyes(dx_left_iris=0.0, lid_gap=10.0):
    """An upright synthetic face: eyes 40 px apart, irises centred, given lid gaps."""
    p = np.zeros((478, 2))
    p[[33, 133, 468]] = [[10, 50], [30, 50], [20 + dx_left_iris, 50]]
    p[[362, 263, 473]] = [[50, 50], [70, 50], [60, 50]]
    p[[159, 145]] = [[20, 50 - lid_gap / 2], [20, 50 + lid_gap / 2]]
    p[[386, 374]] = [[60, 45], [60, 55]]
    return p


def test_iris_reference_distances_and_strabismus_asymmetry():
    d = iris_reference_distances(_eyes())
    assert d == pytest.approx({"left_inner": 10, "left_outer": 10, "left_upper": 5, "left_lower": 5, "left_fissure": 10,
                               "right_inner": 10, "right_outer": 10, "right_upper": 5, "right_lower": 5, "right_fissure": 10})
    assert strabismus_asymmetry(_eyes()) == pytest.approx(0)
    # the image-left iris turned 3 px towards the nose (esotropia): A - B = 3 px
    turned = _eyes(dx_left_iris=3.0)
    assert strabismus_asymmetry(turned) == pytest.approx(3, abs=0.05)
    assert strabismus_asymmetry(turned, normalise=True) == pytest.approx(3 / 40, abs=0.002)
    # a droopy lid narrows the fissure
    assert iris_reference_distances(_eyes(lid_gap=6))["left_fissure"] == pytest.approx(6)
    # rotating and scaling the whole face changes nothing but the scale
    t = np.radians(25)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    moved = 2 * _eyes(3.0) @ rot.T + 17
    assert strabismus_asymmetry(moved) == pytest.approx(2 * strabismus_asymmetry(turned), rel=0.02)
    err = diagnostic_distance_error(_eyes(), turned)
    assert err["strabismus_asymmetry"] == pytest.approx(strabismus_asymmetry(turned) / 40, abs=1e-6)
    assert diagnostic_distance_error(turned, turned)["strabismus_asymmetry"] == 0
    with pytest.raises(ValueError, match="iris centres coincide"):
        iris_reference_distances(np.zeros((478, 2)))


def test_periocular_region_is_the_papers_52_points():
    n = sum(len(g) for side in PERIOCULAR.values() for g in side.values())
    assert n == 50 and n + 2 == 52
