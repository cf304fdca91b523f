"""-A through a lossy WebP: the alpha plane comes back bit for bit beside a lossy RGB; equal-bytes lookup."""

import numpy as np
import pytest

from models.evaluation.alpha_webp import at_equal_bytes, rgba_webp
from models.files.downscaled import Downscaled


def test_the_alpha_survives_a_lossy_webp_and_the_rgb_does_not(photo):
    rng = np.random.default_rng(0)
    alpha = rng.integers(1, 255, size=photo.shape[:2], dtype=np.uint8)
    back, size = rgba_webp(Downscaled(rgb=photo, hr_size=(180, 140), alpha=alpha), quality=75)
    assert np.array_equal(back.alpha, alpha)
    assert not np.array_equal(back.rgb, photo) and back.rgb.shape == photo.shape
    assert back.hr_size == (180, 140) and size > alpha.size // 2  # noise in the alpha: most of the file


def test_equal_bytes_interpolates_on_the_curve_and_says_when_outside():
    curve = [(0.2, 36.0), (0.1, 34.0)]
    assert at_equal_bytes(curve, 0.15) == pytest.approx(35.0)
    assert at_equal_bytes(curve, 0.1) == 34.0
    assert at_equal_bytes(curve, 0.25) is None and at_equal_bytes(curve, 0.05) is None
