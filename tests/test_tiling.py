import numpy as np
import pytest

from models.inference.memory import tiling_for
from models.inference.pipeline import downscale_image, upscale_image
from models.inference.tiles import Box, Tiling, plan_tiles, work_ratio
from models.store.checkpoint import load_model
from models.store.registry import Registry


@pytest.mark.parametrize(
    ("size", "tile", "overlap", "align"),
    [((52, 36), 16, 4, 4), ((37, 50), 16, 4, 1), ((1000, 750), 334, 10, 1), ((90, 35), 40, 16, 1)],
)
def test_plan_covers_the_image_once_in_equal_tiles_with_their_context(size, tile, overlap, align):
    tiles = plan_tiles(size, Tiling(tile=tile, overlap=overlap), align=align)
    covered = np.zeros(size, int)
    shapes = set()
    for core, context in tiles:
        covered[core.y0 : core.y1, core.x0 : core.x1] += 1
        shapes.add((context.y1 - context.y0, context.x1 - context.x0))
        assert context.y0 % align == 0 and context.x0 % align == 0 and core.y0 % align == 0
        # every core has `overlap` of context wherever it does not touch the border
        assert core.y0 == 0 or core.y0 - context.y0 >= overlap
        assert core.x0 == 0 or core.x0 - context.x0 >= overlap
        assert core.y1 == size[0] or context.y1 - core.y1 >= overlap
        assert core.x1 == size[1] or context.x1 - core.x1 >= overlap
        assert 0 <= context.y0 and context.y1 <= size[0] and 0 <= context.x0 and context.x1 <= size[1]
    assert (covered == 1).all()
    ((height, width),) = shapes
    assert height * width <= tile * tile or len(tiles) == 1  # the memory bound is on the area
    assert plan_tiles(size, Tiling(tile=0), align)[0][0] == Box(0, size[0], 0, size[1])


def test_tiles_may_be_oblong_to_fit_the_area():
    """A 12 MP photo at x4 (752 x 1000 LR for -M) in 384^2 tiles with 16 px of context: 2 x 3 oblong tiles
    compute 11% more than the image, where square ones (3 x 3) computed 16% more."""
    tiles = plan_tiles((752, 1000), Tiling(tile=384, overlap=16), align=4)
    assert len(tiles) == 6
    assert work_ratio((752, 1000), Tiling(tile=384, overlap=16), align=4) < 1.12


def test_a_tile_must_leave_a_core():
    with pytest.raises(ValueError, match="a tile of 16 LR px leaves no core with 8 px of context each side"):
        Tiling(tile=16, overlap=8)


def test_tiling_a_12_megapixel_photo_costs_under_15_percent_more_work():
    """At every shipped scale, with each shipped model's measured context and the default memory bound."""
    registry = Registry()
    for wid, entry in registry.entries.items():
        tiling = tiling_for(entry, registry.model(wid))
        s, m = entry.config.scale, entry.config.size_multiple
        lr_size = (-(-3000 // m) * m // s, -(-4000 // m) * m // s)  # the HR is padded to the model's multiple
        ratio = work_ratio(lr_size, tiling, m // s)
        assert entry.context_lr is not None and tiling.overlap == entry.context_lr
        assert ratio < 1.15, (entry.label, s, tiling, ratio)


@pytest.mark.parametrize(("variant", "scale"), [("irn-a", 2), ("irn", 4), ("irn-m", 2), ("dlv-irn-m", 4)])
def test_tiles_with_enough_overlap_match_the_whole_image(model_folder, photo, variant, scale):
    model = load_model(model_folder(variant, scale))
    image = np.concatenate([photo, photo[::-1]], axis=0)  # 180x70
    whole = downscale_image(model, image)
    tiled = downscale_image(model, image, Tiling(tile=40, overlap=16))
    assert np.abs(whole.rgb.astype(int) - tiled.rgb).max() <= 1
    for name in ("alpha", "code"):
        if getattr(whole, name) is not None:
            assert np.abs(getattr(whole, name).astype(int) - getattr(tiled, name)).max() <= 1
    up_whole = upscale_image(model, whole)
    up_tiled = upscale_image(model, whole, Tiling(tile=40, overlap=16))
    assert up_tiled.shape == image.shape
    assert np.abs(up_whole.astype(int) - up_tiled).max() <= 1
