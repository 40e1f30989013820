"""FFHQ crop geometry and the resampling behind it; no face detector needed."""
import numpy as np
import pytest

from gleansr.imaging.imresize import imresize
from gleansr.pipeline import face_align as fa


def rotation(degrees):
    t = np.deg2rad(degrees)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def upright_face(eye_distance, mouth_drop, degrees=0.0, centre=(300.0, 200.0)):
    """Keypoints of a symmetric face: eyes ``eye_distance`` apart, mouth ``mouth_drop`` below them."""
    local = np.array([[-eye_distance / 2, 0.0], [eye_distance / 2, 0.0], [0.0, mouth_drop]])
    points = local @ rotation(degrees).T + centre
    return fa.FaceKeypoints(*points)


def ffhq_template(size, eye_distance, mouth_drop):
    """Where FFHQ's construction puts the eyes and mouth of an upright symmetric face.

    The crop's half side is ``h = max(2 d, 1.8 m)`` and its centre sits ``0.1 m`` below the eye
    midpoint, so in a crop of ``size`` pixels (scale ``k = size / 2h``) the eye midpoint is at
    ``(size/2, size/2 - 0.1 m k)``, the eyes ``d k`` apart and the mouth ``m k`` lower.
    """
    k = size / (2 * max(2 * eye_distance, 1.8 * mouth_drop))
    eye_y = size / 2 - 0.1 * mouth_drop * k
    return np.array([[size / 2 - eye_distance * k / 2, eye_y], [size / 2 + eye_distance * k / 2, eye_y],
                     [size / 2, eye_y + mouth_drop * k]])


@pytest.mark.parametrize("degrees", [0.0, 17.0, -35.0, 180.0])
@pytest.mark.parametrize("mouth_ratio", [0.85, 1.0, 1.3])  # 1.3: the mouth sets the crop size
def test_keypoints_land_on_the_ffhq_template(degrees, mouth_ratio):
    face = upright_face(40.0, 40.0 * mouth_ratio, degrees)
    size = 1024
    points = np.stack([face.eye_left, face.eye_right, face.mouth])
    mapped = fa.apply(fa.quad_to_square(fa.ffhq_quad(face), size), points)
    np.testing.assert_allclose(mapped, ffhq_template(size, 40.0, 40.0 * mouth_ratio), atol=1e-9)


def test_template_numbers_for_a_typical_face():
    """At 1024 px the eyes sit at x 384 and 640: a quarter of the crop apart."""
    template = ffhq_template(1024, 50.0, 50.0)
    np.testing.assert_allclose(template, [[384, 486.4], [640, 486.4], [512, 742.4]])


def test_quad_is_a_square_ordered_like_ffhq():
    quad = fa.ffhq_quad(upright_face(40.0, 36.0, degrees=0.0, centre=(100.0, 100.0)))
    side = 160.0  # 2 * max(2 * 40, 1.8 * 36)
    centre = np.array([100.0, 100.0 + 3.6])
    np.testing.assert_allclose(quad, centre + side / 2 * np.array([[-1, -1], [-1, 1], [1, 1], [1, -1]]), atol=1e-9)
    assert fa.quad_side(quad) == pytest.approx(side)


def test_68_point_keypoints_use_the_ffhq_indices():
    points = np.zeros((68, 2))
    points[36:42] = [10.0, 20.0] + np.arange(6)[:, None]  # mean (12.5, 22.5)
    points[42:48] = [50.0, 20.0]
    points[48], points[54] = [20.0, 60.0], [40.0, 62.0]
    points[49:54] = 999.0  # other mouth points do not count
    kp = fa.keypoints_from_68(points)
    np.testing.assert_allclose([kp.eye_left, kp.eye_right, kp.mouth], [[12.5, 22.5], [50.0, 20.0], [30.0, 61.0]])


def test_5_point_keypoints_follow_dlibs_point_order():
    # dlib 5-point order: image-right eye corners, image-left eye corners, nose bottom
    points = np.array([[80.0, 50.0], [60.0, 50.0], [20.0, 50.0], [40.0, 50.0], [50.0, 80.0]])
    kp = fa.keypoints_from_5(points)
    np.testing.assert_allclose(kp.eye_left, [30.0, 50.0])
    np.testing.assert_allclose(kp.eye_right, [70.0, 50.0])
    np.testing.assert_allclose(kp.mouth, [50.0, 50.0 + 30.0 * fa.MOUTH_FROM_NOSE])
    with pytest.raises(ValueError, match="68 or 5"):
        fa.keypoints_from_landmarks(np.zeros((7, 2)))


def test_matrix_helpers_invert_and_compose():
    m = fa.quad_to_square(fa.ffhq_quad(upright_face(30.0, 33.0, degrees=25.0)), 64)
    p = np.array([[3.0, 4.0], [100.0, -7.0]])
    np.testing.assert_allclose(fa.apply(fa.invert(m), fa.apply(m, p)), p, atol=1e-9)
    np.testing.assert_allclose(fa.apply(fa.compose(fa.translation(1, 2), fa.scaling(3)), p), p * 3 + [1, 2])


# --- resampling ----------------------------------------------------------------------------------


def smooth_image(h=60, w=80):
    y, x = np.mgrid[0:h, 0:w] / 10.0
    channels = [np.sin(x) * np.cos(y), np.cos(0.7 * x + 0.3 * y), np.sin(0.5 * y)]
    return np.stack(channels, axis=-1).astype(np.float32) * 0.5 + 0.5


def test_identity_and_integer_shift_are_exact():
    image = smooth_image()
    np.testing.assert_allclose(fa.warp_affine(image, fa.translation(0, 0), (60, 80)), image, atol=1e-5)
    shifted = fa.warp_affine(image, fa.translation(7, 3), (40, 50))
    np.testing.assert_allclose(shifted, image[3:43, 7:57], atol=1e-5)


@pytest.mark.parametrize("pad", ["reflect", "edge"])
def test_outside_the_image_is_padded(pad):
    image = smooth_image()
    out = fa.warp_affine(image, fa.translation(-5, -4), (20, 30), pad=pad)  # window starts above-left
    expected = np.pad(image, ((4, 0), (5, 0), (0, 0)), mode="reflect" if pad == "reflect" else "edge")[:20, :30]
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_shrinking_is_antialiased():
    """One-pixel stripes shrunk 5x (with a rotation) must average out, not alias into moire."""
    stripes = np.zeros((300, 300, 3), np.float32)
    stripes[:, ::2] = 1.0
    dst_to_src = fa.compose(fa.translation(150, 150), fa.compose(fa.scaling(5.0), fa.translation(-20, -20)))
    dst_to_src[:, :2] = dst_to_src[:, :2] @ rotation(10.0).T
    out = fa.warp_affine(stripes, dst_to_src, (40, 40))
    assert abs(out.mean() - 0.5) < 0.02 and out.std() < 0.03


def test_shrinking_by_two_matches_matlab_imresize():
    image = smooth_image(64, 64)
    out = fa.warp_affine(image, fa.scaling(2.0), (32, 32))
    np.testing.assert_allclose(out[2:-2, 2:-2], imresize(image, 0.5)[2:-2, 2:-2], atol=2e-3)


def gaussian_dots(shape, points, sigma):
    y, x = np.mgrid[0:shape[0], 0:shape[1]] + 0.5
    image = np.zeros(shape, np.float32)
    for px, py in points:
        image += np.exp(-((x - px) ** 2 + (y - py) ** 2) / (2 * sigma**2))
    return np.repeat(image[..., None], 3, axis=2)


def dot_centres(image, guesses, radius):
    """Intensity-weighted centroids near each guess: where the dots ended up."""
    y, x = np.mgrid[0:image.shape[0], 0:image.shape[1]] + 0.5
    weight = image[..., 0]
    centres = []
    for gx, gy in guesses:
        near = (x - gx) ** 2 + (y - gy) ** 2 < radius**2
        w = weight * near
        centres.append([(w * x).sum() / w.sum(), (w * y).sum() / w.sum()])
    return np.array(centres)


@pytest.mark.parametrize("size, eye_distance, max_native", [
    (64, 100.0, 2048),  # shrink 6x after resampling at the face's own scale
    (64, 100.0, 128),  # a face larger than the resampling cap: pre-shrunk, then rotated
    (256, 40.0, 2048),  # enlarge 1.6x
])
def test_aligned_crop_puts_the_pixels_on_the_template(monkeypatch, size, eye_distance, max_native):
    """Dots drawn at a tilted face's eyes and mouth appear at the template spots in the crop."""
    monkeypatch.setattr(fa, "MAX_NATIVE_SIZE", max_native)
    face = upright_face(eye_distance, eye_distance * 0.9, degrees=-23.0, centre=(260.0, 230.0))
    photo = gaussian_dots((480, 520), [face.eye_left, face.eye_right, face.mouth], sigma=eye_distance / 12)
    crop = fa.align_face(photo, fa.ffhq_quad(face), size)
    assert crop.shape == (size, size, 3)
    template = ffhq_template(size, eye_distance, eye_distance * 0.9)
    found = dot_centres(crop, template, radius=size / 10)
    np.testing.assert_allclose(found, template, atol=0.01)


def test_feather_mask_is_a_smooth_band():
    t = np.linspace(0.0, 1.0, 2001)
    coords = np.stack([t, np.full_like(t, 0.5)], axis=-1)
    mask = fa.feather_mask(coords, erode=0.02, feather=0.1)
    assert mask[t <= 0.02].max() == 0.0 and mask[(t >= 0.12) & (t <= 0.88)].min() == 1.0
    assert np.all(np.diff(mask[t <= 0.5]) >= 0)  # rises monotonically towards the centre
    slope = np.abs(np.diff(mask)) / (t[1] - t[0])
    assert slope.max() <= 1.5 / 0.1 + 1e-6  # smoothstep's steepest slope, no jump anywhere
    corner = fa.feather_mask(np.array([[0.05, 0.05], [0.05, 0.5]]), 0.02, 0.1)
    assert corner[0] < corner[1]  # corners are rounded
