import numpy as np
import pytest

from models.checkpoint import load_model
from models.pipeline import Tiling, downscale_image, plan_tiles, upscale_image


def test_plan_covers_the_image_once():
    tiles = plan_tiles((50, 37), Tiling(tile=16, overlap=4), align=4)
    covered = np.zeros((50, 37), int)
    for core, context in tiles:
        covered[core.y0 : core.y1, core.x0 : core.x1] += 1
        assert core.y0 % 4 == 0 and core.x0 % 4 == 0
        assert context.y0 == max(0, core.y0 - 4) and context.x1 == min(37, core.x1 + 4)
    assert (covered == 1).all()
    assert plan_tiles((50, 37), Tiling(tile=0), 4)[0][0].y1 == 50


@pytest.mark.parametrize(("variant", "scale"), [("irn-a", 2), ("irn", 4), ("irn-m", 2), ("dlv-irn-m", 4)])
def test_tiles_with_enough_overlap_match_the_whole_image(model_folder, photo, variant, scale):
    model = load_model(model_folder(variant, scale))
    image = np.concatenate([photo, photo[::-1]], axis=0)  # 180x70
    whole = downscale_image(model, image)
    tiled = downscale_image(model, image, Tiling(tile=8, overlap=48))
    assert np.abs(whole.rgb.astype(int) - tiled.rgb).max() <= 1
    for name in ("alpha", "code"):
        if getattr(whole, name) is not None:
            assert np.abs(getattr(whole, name).astype(int) - getattr(tiled, name)).max() <= 1
    up_whole = upscale_image(model, whole)
    up_tiled = upscale_image(model, whole, Tiling(tile=8, overlap=48))
    assert up_tiled.shape == image.shape
    assert np.abs(up_whole.astype(int) - up_tiled).max() <= 1
