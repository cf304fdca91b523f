import json
import math

import pytest
from PIL import Image

from models.checkpoint import save_model
from models.evaluation.learning_curve import (
    Point,
    fit_log_linear,
    hr_pixels_trained,
    main,
    price,
)
from models.networks.rescaler import Rescaler
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


def test_the_command_prints_the_table_and_draws_the_curve(tmp_path, capsys):
    curves = {
        "x4 IRN-A": {
            "measured": "eval/, 19 photos",
            "target": 10.0,
            "target_name": "the paper's gain",
            "rate_px_per_cpu_s": 50_000,
            "points": [
                {"label": "short", "hr_pixels": 1e8, "psnr": 35.0, "bicubic": 30.0, "fit": True},
                {"label": "long", "hr_pixels": 1e9, "psnr": 37.0, "bicubic": 30.0, "fit": True},
            ],
        }
    }
    points = tmp_path / "curve.json"
    points.write_text(json.dumps(curves))
    assert main([str(points), "--figure", str(tmp_path / "curve.png")]) == 0
    out = capsys.readouterr().out
    assert "| long | 1,000 M | +7.00 dB | yes |" in out
    assert "Fit over 2 points: +2.00 dB per tenfold HR pixels." in out
    priced = "To reach the paper's gain (+10.00 dB): 31.6 G HR pixels, 30.6 G more than the 1.00 G trained, 170 CPU-h"
    assert priced in out
    assert Image.open(tmp_path / "curve.png").size[0] > 300
