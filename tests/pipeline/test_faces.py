"""The whole-photo face pipeline on real photos shipped with scikit-image.

No trained face model is available in tests: the "face model" is a stand-in that enlarges the
aligned crop with bicubic, so a perfect pipeline gives back (nearly) the background upscale.
"""
import importlib.util
import sys

import numpy as np
import pytest
import skimage.data
import skimage.transform
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from gleansr.errors import GleanError
from gleansr.pipeline import face_align as fa
from gleansr.pipeline import face_detect
from gleansr.pipeline.faces import FaceEnhancer, bicubic_upscale, draw_faces, save_face_crops

pytest.importorskip("dlib")
if importlib.util.find_spec("face_recognition_models") is None:
    pytest.skip("face_recognition_models is not installed", allow_module_level=True)

ASTRONAUT = skimage.data.astronaut().astype(np.float32) / 255  # one face, eyes near (225, 103)


def bicubic_face_model(out_size, offset=0.0):
    """Stand-in face model: (N, in, in, 3) -> (N, out, out, 3) by bicubic (+ a brightness offset)."""
    def sr_fn(batch):
        x = torch.from_numpy(batch).permute(0, 3, 1, 2)
        y = F.interpolate(x, size=(out_size, out_size), mode="bicubic", align_corners=False) + offset
        return y.clamp(0, 1).permute(0, 2, 3, 1).numpy()
    return sr_fn


def eye_midpoint(landmarks):
    kp = fa.keypoints_from_landmarks(landmarks)
    return (kp.eye_left + kp.eye_right) / 2


def ffhq_template(size, keypoints):
    """Analytic FFHQ spots for this face's eye distance d and eye-to-mouth distance m (see
    test_face_align): crop half side h = max(2d, 1.8m), eye midpoint 0.1 m above the centre."""
    d = np.hypot(*(keypoints.eye_right - keypoints.eye_left))
    m = np.hypot(*(keypoints.mouth - (keypoints.eye_left + keypoints.eye_right) / 2))
    k = size / (2 * max(2 * d, 1.8 * m))
    eye_y = size / 2 - 0.1 * m * k
    return np.array([[size / 2 - d * k / 2, eye_y], [size / 2 + d * k / 2, eye_y], [size / 2, eye_y + m * k]])


def aligned_keypoints(face_keypoints, matrix):
    return fa.apply(matrix, np.stack([face_keypoints.eye_left, face_keypoints.eye_right, face_keypoints.mouth]))


@pytest.fixture(scope="module")
def detector():
    return face_detect.FaceDetector()


# --- detection and alignment ---------------------------------------------------------------------


def test_astronaut_is_aligned_onto_the_ffhq_template(detector):
    faces = detector.detect(ASTRONAUT)
    assert len(faces) == 1
    as_bytes = detector.detect(skimage.data.astronaut())  # uint8 photos are read the same
    assert len(as_bytes) == 1 and np.array_equal(as_bytes[0].landmarks, faces[0].landmarks)
    kp = fa.keypoints_from_landmarks(faces[0].landmarks)
    quad = fa.ffhq_quad(kp)
    # the detected eyes and mouth, moved by the alignment, sit on the analytic template
    mapped = aligned_keypoints(kp, fa.quad_to_square(quad, 1024))
    np.testing.assert_allclose(mapped, ffhq_template(1024, kp), atol=4.0)
    assert abs(mapped[0, 0] - 384) < 2 and abs(mapped[1, 0] - 640) < 2  # eyes a quarter crop apart
    # and the pixels agree: landmarks found again *in the aligned crop* are where the map says
    crop = fa.align_face(ASTRONAUT, quad, 512)
    again = face_detect.FaceDetector(upsample=0, check_score=None).detect(crop)
    assert len(again) == 1
    kp_again = fa.keypoints_from_landmarks(again[0].landmarks)
    found = np.stack([kp_again.eye_left, kp_again.eye_right, kp_again.mouth])
    np.testing.assert_allclose(found, aligned_keypoints(kp, fa.quad_to_square(quad, 512)), atol=3.0)


def test_a_tilted_photo_gives_the_same_aligned_face(detector):
    """HOG finds heads rolled by 20 degrees, and the aligned crop comes out as for the upright photo."""
    tilted = skimage.transform.rotate(ASTRONAUT, 20, resize=True, mode="edge").astype(np.float32)
    upright, rolled = detector.detect(ASTRONAUT)[0], detector.detect(tilted)
    assert len(rolled) == 1
    crops = [fa.align_face(photo, fa.ffhq_quad(fa.keypoints_from_landmarks(face.landmarks)), 128)
             for photo, face in ((ASTRONAUT, upright), (tilted, rolled[0]))]
    assert np.abs(crops[0] - crops[1]).mean() < 0.03
    kp = fa.keypoints_from_landmarks(rolled[0].landmarks)
    np.testing.assert_allclose(aligned_keypoints(kp, fa.quad_to_square(fa.ffhq_quad(kp), 1024)),
                               ffhq_template(1024, kp), atol=4.0)


def group_photo():
    """Coffee and a cat as clutter, three astronaut heads: as is, 0.75x turned 15 deg, 1.25x turned -10 deg.

    Returns the photo (480, 720, 3) and where each head's eye midpoint went.
    """
    canvas = skimage.transform.resize(skimage.data.coffee(), (480, 720), anti_aliasing=True).astype(np.float32)
    cat = skimage.transform.rescale(skimage.data.chelsea(), 0.5, channel_axis=2, anti_aliasing=True)
    canvas[10:10 + cat.shape[0], 240:240 + cat.shape[1]] = cat
    head, eyes = ASTRONAUT[20:230, 120:330], eye_midpoint(face_detect.FaceDetector().detect(ASTRONAUT)[0].landmarks)
    expected = []
    for (x, y), zoom, degrees in [((20, 30), 1.0, 0.0), ((260, 250), 0.75, 15.0), ((455, 120), 1.25, -10.0)]:
        patch = skimage.transform.rescale(head, zoom, channel_axis=2, anti_aliasing=zoom < 1)
        patch = skimage.transform.rotate(patch, degrees, mode="edge")  # counter-clockwise on screen
        n = patch.shape[0]
        canvas[y:y + n, x:x + n] = patch
        t = np.deg2rad(degrees)
        turn = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
        expected.append(turn @ ((eyes - [120, 20]) * zoom - n / 2) + n / 2 + [x, y])
    return canvas, np.array(expected)


@pytest.fixture(scope="module")
def group():
    return group_photo()


def test_every_face_of_a_group_photo_is_found(detector, group):
    photo, expected = group
    faces = detector.detect(photo)
    assert len(faces) == 3
    found = np.array(sorted((eye_midpoint(f.landmarks) for f in faces), key=lambda p: p[0]))
    np.testing.assert_allclose(found, expected, atol=2.5)
    sides = sorted(fa.quad_side(fa.ffhq_quad(fa.keypoints_from_landmarks(f.landmarks))) for f in faces)
    single = fa.quad_side(fa.ffhq_quad(fa.keypoints_from_landmarks(detector.detect(ASTRONAUT)[0].landmarks)))
    np.testing.assert_allclose(sides, np.array([0.75, 1.0, 1.25]) * single, rtol=0.05)


def test_badges_and_cats_are_not_faces(detector):
    """The mission badge scores 0.43 as a photo-level HOG candidate once the photo is turned
    10 degrees; the check on the aligned crop rejects it."""
    turned = skimage.transform.rotate(ASTRONAUT, 10, resize=True, mode="edge").astype(np.float32)
    unchecked = face_detect.FaceDetector(check_score=None).detect(turned)
    assert len(unchecked) > 1
    faces = detector.detect(turned)
    assert len(faces) == 1 and faces[0].check_score > 0.8
    assert detector.detect(skimage.data.chelsea()) == []


def test_five_point_landmarks_give_nearly_the_same_crop():
    detections = [face_detect.FaceDetector(landmarks=n).detect(ASTRONAUT)[0] for n in ("68", "5")]
    quads = [fa.ffhq_quad(fa.keypoints_from_landmarks(d.landmarks)) for d in detections]
    side = fa.quad_side(quads[0])
    assert abs(fa.quad_side(quads[1]) - side) < 0.03 * side
    assert np.hypot(*(quads[1].mean(axis=0) - quads[0].mean(axis=0))) < 0.05 * side


def test_large_photos_are_searched_at_a_capped_size(detector):
    big = bicubic_upscale(ASTRONAUT, 2)
    capped = face_detect.FaceDetector(max_side=512).detect(big)
    assert len(capped) == 1
    np.testing.assert_allclose(capped[0].box, np.array(detector.detect(ASTRONAUT)[0].box) * 2, atol=4)
    # landmarks come from the full-size photo
    original_eyes = eye_midpoint(detector.detect(ASTRONAUT)[0].landmarks)
    np.testing.assert_allclose(eye_midpoint(capped[0].landmarks), original_eyes * 2, atol=3)


def test_cnn_detector_finds_the_astronaut():
    head = ASTRONAUT[:256, 100:356]  # (the CNN takes about 1.5 s for the whole 512 px photo)
    faces = face_detect.FaceDetector(detector="dlib-cnn", landmarks="5", upsample=0).detect(head)
    assert len(faces) == 1 and faces[0].check_score is None
    np.testing.assert_allclose(eye_midpoint(faces[0].landmarks), [225.3 - 100, 103.3], atol=4)


# --- the whole photo ---------------------------------------------------------------------------


def face_mask(result, enhancer, scale, face=0):
    """The blend weight at every output pixel, recomputed from the face's alignment."""
    h, w = result.image.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    to_aligned = fa.compose(result.faces[face].to_aligned, fa.scaling(1 / scale))
    to_unit = fa.compose(fa.scaling(1 / enhancer.in_size), to_aligned)
    return fa.feather_mask(fa.apply(to_unit, np.stack([xs, ys], axis=-1)), enhancer.erode, enhancer.feather)


@pytest.fixture(scope="module")
def astronaut_x2():
    """Astronaut x2 with a lossless stand-in (the 174 px face goes in at 256 px) and its background."""
    enhancer = FaceEnhancer(bicubic_face_model(512), 256, 512)
    return enhancer, enhancer.enhance(ASTRONAUT, 2), bicubic_upscale(ASTRONAUT, 2)


def test_paste_back_puts_the_face_back_where_it_was(astronaut_x2):
    enhancer, result, background = astronaut_x2
    assert result.image.shape == (1024, 1024, 3) and len(result.restored) == 1
    mask = face_mask(result, enhancer, 2)
    diff = np.abs(result.image - background)
    # a lossless stand-in reproduces the background: a 0.25 px misplacement already gives 0.009
    assert diff[mask == 1].mean() < 0.004
    band = (mask > 0) & (mask < 1)
    assert diff[band].mean() < 0.002 and diff[band].max() < 0.08


def test_pixels_away_from_faces_are_the_background_exactly(astronaut_x2):
    enhancer, result, background = astronaut_x2
    mask = face_mask(result, enhancer, 2)
    assert np.array_equal(result.image[mask == 0], background[mask == 0])
    assert (mask == 0).mean() > 0.8  # most of the photo


def test_no_seam_where_a_different_face_is_blended_in():
    """A face model 0.1 brighter than the background: the step appears nowhere at once, it is
    spread over the feather band (a hard paste would jump by 0.1 all along the crop edge)."""
    enhancer = FaceEnhancer(bicubic_face_model(512, offset=0.1), 256, 512)
    result, background = enhancer.enhance(ASTRONAUT, 2), bicubic_upscale(ASTRONAUT, 2)
    mask = face_mask(result, enhancer, 2)
    lift = result.image - background
    unclipped = background.max(axis=2) < 0.85
    np.testing.assert_allclose(lift[(mask == 1) & unclipped].mean(), 0.1, atol=0.01)
    band_and_rim = (mask < 1) & ndimage.binary_dilation(mask > 0, iterations=2)  # a hard seam would be on the rim
    steps = np.maximum(np.abs(np.diff(lift, axis=0))[:, :-1], np.abs(np.diff(lift, axis=1))[:-1]).max(axis=2)
    worst = np.percentile(steps[band_and_rim[:-1, :-1]], 99.5)
    crop_px = result.faces[0].crop_size * 2
    assert worst < 0.1 * 1.5 / (enhancer.feather * crop_px) + 0.02  # smoothstep slope + resampling noise


def test_group_photo_restores_every_face(group):
    photo, _ = group
    batches = []

    def recording_model(batch):
        batches.append(batch.shape)
        return bicubic_face_model(128)(batch)

    result = FaceEnhancer(recording_model, 64, 128, batch_size=2).enhance(photo, 2)
    assert result.image.shape == (960, 1440, 3)
    assert len(result.faces) == 3 and len(result.restored) == 3
    assert batches == [(2, 64, 64, 3), (1, 64, 64, 3)]
    assert result.messages[-1] == "3 of 3 face(s) restored by the face model"


@pytest.mark.parametrize("only, zoom", [("largest", 1.25), ("center", 0.75)])
def test_only_one_face(group, only, zoom):
    photo, expected = group
    result = FaceEnhancer(bicubic_face_model(128), 64, 128, only=only).enhance(photo, 1)
    (kept,) = result.restored
    assert np.hypot(*(eye_midpoint(kept.landmarks) - expected[[1.0, 0.75, 1.25].index(zoom)])) < 3
    assert sum(f"not the {only} face" in m for m in result.messages) == 2


def test_small_faces_are_skipped_with_a_message(group):
    photo, _ = group
    result = FaceEnhancer(bicubic_face_model(128), 64, 128, min_face=150).enhance(photo, 1)
    assert len(result.restored) == 2
    (small,) = [f for f in result.faces if not f.restored]
    assert small.crop_size < 150 and "too small" in small.note
    assert any("too small" in m and "left to the background upscaler" in m for m in result.messages)


@pytest.mark.parametrize("photo", [skimage.data.coffee().astype(np.float32) / 255,
                                   np.full((40, 60, 3), 0.5, np.float32)])
def test_a_photo_without_faces_is_the_background_upscale(photo):
    result = FaceEnhancer(bicubic_face_model(128), 64, 128).enhance(photo, 3)
    assert result.faces == [] and np.array_equal(result.image, bicubic_upscale(photo, 3))
    assert result.messages == ["no face found: the whole photo was upscaled by the background upscaler"]


def test_the_background_upscaler_is_pluggable():
    nearest = lambda photo, scale: photo.repeat(scale, axis=0).repeat(scale, axis=1)  # noqa: E731
    enhancer = FaceEnhancer(bicubic_face_model(256), 128, 256, background=nearest)
    result = enhancer.enhance(ASTRONAUT, 2)
    far = face_mask(result, enhancer, 2) == 0
    assert len(result.restored) == 1 and np.array_equal(result.image[far], nearest(ASTRONAUT, 2)[far])
    assert "enlarged: its crop is 347 px in the output, more than the model's 256 px" in result.messages[0]
    with pytest.raises(ValueError, match="background upscaler returned"):
        FaceEnhancer(bicubic_face_model(256), 128, 256, background=lambda p, s: p).enhance(ASTRONAUT, 2)


def test_a_face_cut_by_the_frame_is_padded_or_skipped():
    cut = ASTRONAUT[60:, 150:]  # the face's crop square reaches past the top and left edges
    enhancer = FaceEnhancer(bicubic_face_model(512), 256, 512)
    result = enhancer.enhance(cut, 2)
    (face,) = result.faces
    assert face.restored and 0.1 < face.outside < 0.4
    background = bicubic_upscale(cut, 2)
    mask = face_mask(result, enhancer, 2)
    assert np.abs(result.image - background)[mask > 0].mean() < 0.004  # the padding did not leak in

    strict = FaceEnhancer(bicubic_face_model(512), 256, 512, max_outside=0.05).enhance(cut, 2)
    assert strict.restored == [] and "outside the photo" in strict.faces[0].note
    assert np.array_equal(strict.image, background)


def test_a_wrong_face_model_output_is_reported():
    enhancer = FaceEnhancer(bicubic_face_model(100), 64, 128)
    with pytest.raises(ValueError, match=r"sr_fn returned shape \(1, 100, 100, 3\)"):
        enhancer.enhance(ASTRONAUT, 2)
    with pytest.raises(GleanError, match="unsupported array dtype"):
        enhancer.enhance(skimage.data.astronaut().astype(np.int32), 2)


def test_the_photo_goes_in_as_the_upscaler_takes_it(tmp_path):
    """uint8, PIL and a path give the float result, rounded, back as the kind given."""
    enhancer = FaceEnhancer(bicubic_face_model(128), 64, 128)
    want = np.rint(enhancer.enhance(ASTRONAUT, 1).image * 255)
    u8 = enhancer.enhance(skimage.data.astronaut(), 1)
    assert u8.image.dtype == np.uint8 and np.array_equal(u8.image, want)
    assert u8.restored and u8.loaded.rgb.dtype == np.float32
    Image.fromarray(skimage.data.astronaut()).save(tmp_path / "astronaut.png")
    for photo in (tmp_path / "astronaut.png", Image.open(tmp_path / "astronaut.png")):
        result = enhancer.enhance(photo, 1)
        assert isinstance(result.image, Image.Image) and np.array_equal(np.asarray(result.image), want)


def test_debug_drawing_and_saved_crops(tmp_path, group):
    photo, _ = group
    result = FaceEnhancer(bicubic_face_model(128), 64, 128, keep_crops=True, min_face=150).enhance(photo, 1)
    debug = draw_faces(photo, result.faces)
    assert debug.shape == photo.shape
    for face in result.faces:
        x0, y0, x1, y1 = (round(v) for v in face.box)
        np.testing.assert_allclose(debug[y0, (x0 + x1) // 2], [1.0, 220 / 255, 0.0])  # yellow box
        x, y = np.floor(face.quad[:2].mean(axis=0)).astype(int)  # middle of the square's left side
        colour = debug[max(y - 2, 0):y + 3, max(x - 2, 0):x + 3].reshape(-1, 3)
        want = [0.0, 220 / 255, 0.0] if face.restored else [230 / 255, 0.0, 0.0]
        assert np.isclose(colour, want).all(axis=1).any()
    paths = save_face_crops(result, tmp_path, "group")
    expected = [f"group_face{f.index}_{kind}.png" for f in result.restored for kind in ("aligned", "sr")]
    assert sorted(p.name for p in paths) == sorted(expected)
    with pytest.raises(GleanError, match="already exists"):
        save_face_crops(result, tmp_path, "group")


# --- setup errors ----------------------------------------------------------------------------


def test_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)
    with pytest.raises(GleanError, match=r"^face detection \(dlib and its landmark models\) is not installed here: pip install 'gleansr\[faces\]'$"):
        face_detect.FaceDetector()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(GleanError, match=r"^face detection \(dlib and its landmark models\) is not installed here: pip install 'gleansr\[faces\]'$"):
        face_detect.model_file("shape_predictor_5_face_landmarks.dat")
    with pytest.raises(GleanError, match=r"^face detection .* is not installed here"):
        face_detect.check_installed()


def test_bad_choices_are_user_errors():
    with pytest.raises(GleanError, match="unknown face detector 'mtcnn'"):
        face_detect.FaceDetector(detector="mtcnn")
    with pytest.raises(GleanError, match="unknown landmark model '81'"):
        face_detect.FaceDetector(landmarks="81")
    with pytest.raises(GleanError, match="unknown face choice 'smallest'"):
        FaceEnhancer(bicubic_face_model(128), 64, 128, only="smallest")


def test_licence_notes_name_the_restriction():
    assert "commercial" in FaceEnhancer(bicubic_face_model(128), 64, 128).licence_note
    assert "estimated" in FaceEnhancer(bicubic_face_model(128), 64, 128, landmarks="5").licence_note
