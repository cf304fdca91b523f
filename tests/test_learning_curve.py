import json
import math

import pytest
from PIL import Image

from models.evaluation.learning_curve import (
    Point,
    fit_log_linear,
    hr_pixels_trained,
    main,
    price,
    readings,
)
from models.networks.rescaler import Rescaler
from models.store.checkpoint import save_model
from tests.conftest import ROOT, tiny_config


def test_the_fit_is_least_squares_on_log_pixels_and_prices_a_target():
    points = [Point("a", 1e8, 5.0, True), Point("b", 1e9, 7.0, True), Point("mid-cycle", 3e8, 1.0, False)]
    fit = fit_log_linear(points)
    assert fit.per_decade == pytest.approx(2.0) and fit.points == 2  # the snapshot is shown, not fitted
    assert fit.gain_at(1e10) == pytest.approx(9.0)
    assert fit.pixels_for(10.0) == pytest.approx(10**10.5)
    cost = price(fit, 10.0, rate_px_per_cpu_s=1e5, trained=1e9)
    assert cost["more_hr_pixels"] == pytest.approx(10**10.5 - 1e9)
    assert cost["cpu_hours"] == pytest.approx((10**10.5 - 1e9) / 1e5 / 3600)
    flat = fit_log_linear([Point("a", 1e8, 5.0, True), Point("b", 1e9, 4.0, True)])
    assert math.isinf(flat.pixels_for(6.0))  # a curve that does not rise never gets there
    with pytest.raises(ValueError, match="a fit needs points at two pixel counts at least, got 1"):
        fit_log_linear(points[:1])


def test_hr_pixels_count_every_stage_that_led_to_the_weights(tmp_path):
    shipped = hr_pixels_trained(ROOT / "models" / "weights" / "irn-a-x4")
    assert shipped == (6090 + 3660 + 2440) * 8 * 64**2  # x2 first cycle, x4 first and second cycles
    run = tmp_path / "run"
    training = {
        "steps": 100,
        "batch_size": 4,
        "patch": 32,
        "config": {"init_from": str(ROOT / "models/weights/irn-a-x4")},
    }
    save_model(Rescaler(tiny_config("irn-a", 4)), run, extra={"training": training})
    assert hr_pixels_trained(run) == shipped + 100 * 4 * 32**2


def curve(points: list[tuple[str, float, float, bool]], **extra) -> dict:
    return {
        "measured": "eval/, 19 photos",
        "targets": [{"name": "the floor", "gain": 8.0}, {"name": "the paper's gain", "gain": 10.0}],
        "rate_px_per_cpu_s": 50_000,
        "rate_source": "one thread",
        "points": [
            {"label": label, "hr_pixels": px, "psnr": 30.0 + gain, "bicubic": 30.0, "fit": fitted}
            for label, px, gain, fitted in points
        ],
        **extra,
    }


def test_a_bending_curve_is_priced_at_its_last_two_cycle_ends_too_and_a_lone_point_borrows_the_slopes():
    curves = {
        "x4": curve([("a", 1e8, 4.0, True), ("b", 1e9, 6.0, True), ("c", 1e10, 7.0, True), ("mid", 5e9, 3.0, False)]),
        "x2": curve([("shipped", 1e9, 12.0, True)], slope_from="x4"),
    }
    x4 = readings("x4", curves, ROOT)
    assert [f.reading for f in x4] == ["fit over 3 cycle ends", "the last two cycle ends"]
    assert [f.per_decade for f in x4] == [pytest.approx(1.5), pytest.approx(1.0)]
    assert x4[1].pixels_for(8.0) == pytest.approx(1e11)  # the line through b and c: one more decade per dB
    x2 = readings("x2", curves, ROOT)
    assert [f.reading for f in x2] == ["fit over 3 cycle ends of x4", "the last two cycle ends of x4"]
    assert [f.gain_at(1e9) for f in x2] == [pytest.approx(12.0), pytest.approx(12.0)]  # through its own point
    assert x2[1].pixels_for(13.0) == pytest.approx(1e10)
    curves["x2"] = curve([("mid", 1e9, 12.0, False)], slope_from="x4")
    with pytest.raises(ValueError, match="x2: a curve priced at another's slopes needs a cycle end"):
        readings("x2", curves, ROOT)


def test_the_command_prints_the_table_and_draws_the_curve(tmp_path, capsys):
    curves = {
        "x4 IRN-A": curve([("short", 1e8, 5.0, True), ("long", 1e9, 7.0, True)]),
        "x4 IRN-JPEG": curve([("first", 1e8, 1.0, True), ("second", 1e9, 1.0, True)]),
        "x2 IRN-A": curve([("shipped", 1e9, 12.0, True)], slope_from="x4 IRN-A"),
    }
    points = tmp_path / "curve.json"
    points.write_text(json.dumps(curves))
    assert main([str(points), "--figure", str(tmp_path / "curve.png")]) == 0
    out = capsys.readouterr().out
    assert "| long | 1,000 M | +7.00 dB | yes |" in out
    assert "Per tenfold HR pixels, fit over 2 cycle ends: +2.00 dB. From the 1.00 G trained:" in out
    priced = "| the paper's gain (+10.00 dB) | 31.6 G HR pixels: 30.6 G more, 170 CPU-h |"
    assert priced in out
    assert "| the floor (+8.00 dB) | never: the line does not rise |" in out  # a flat curve
    assert "Per tenfold HR pixels, fit over 2 cycle ends of x4 IRN-A: +2.00 dB." in out
    assert "| the floor (+8.00 dB) | reached: +12.00 dB measured |" in out
    assert Image.open(tmp_path / "curve.png").size == (1320, 924)  # two rows of two panels, one left empty
