"""The analyses' math against what is known: a lesioned identity block changes nothing, filter
norms after filter normalisation, the top Hessian eigenvalue of a quadratic, CKA's invariances."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from resnet_exp.analysis import cka, landscape, lesion, sharpness
from resnet_exp.models.resnet import CifarResNet
from resnet_exp.models.vgg import VGG


def digits_like(n: int = 64, channels: int = 3, size: int = 16):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, channels, size, size, generator=g), torch.randint(0, 10, (n,),
                                                                           generator=g)


def test_removing_a_block_that_starts_as_its_shortcut_changes_nothing():
    torch.manual_seed(0)
    net = CifarResNet(depth=20, zero_init_residual=True).eval()
    x, y = digits_like()
    with torch.no_grad():
        before = net(x)
        for block in lesion.blocks(net):
            with lesion.removed(net, [block.name]):
                torch.testing.assert_close(net(x), before)
    result = lesion.lesion(net, x, y, draws=2)
    assert len(result["blocks"]) == 9 and len(result["k"]) == 9
    assert all(b["accuracy"] == result["accuracy"] for b in result["blocks"])


def test_removing_a_block_of_a_trained_like_net_changes_its_output_and_hooks_are_removed():
    torch.manual_seed(0)
    for net in (CifarResNet(depth=8).eval(), CifarResNet(depth=8, residual=False).eval(),
                VGG(depth=8, num_classes=10, residual=True).eval()):
        x, _ = digits_like()
        with torch.no_grad():
            before = net(x)
            name = lesion.blocks(net)[0].name
            with lesion.removed(net, [name]):
                assert not torch.allclose(net(x), before)
            torch.testing.assert_close(net(x), before)  # restored


def test_filter_normalised_directions_have_the_weights_filter_norms():
    torch.manual_seed(0)
    net = CifarResNet(depth=8)
    d = landscape.filter_normalized_direction(net, torch.Generator().manual_seed(1))
    for name, p in net.named_parameters():
        if p.dim() <= 1:
            assert torch.count_nonzero(d[name]) == 0, name  # BN and bias directions are zero
        else:
            dims = tuple(range(1, p.dim()))
            norm = torch.linalg.vector_norm
            torch.testing.assert_close(norm(d[name], dim=dims), norm(p.detach(), dim=dims))


def test_the_landscape_centre_is_the_trained_model_and_the_weights_come_back():
    torch.manual_seed(0)
    net = CifarResNet(depth=8).eval()
    x, y = digits_like()
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    result = landscape.landscape(net, x, y, points_1d=5, points_2d=3)
    centre = nn.functional.cross_entropy(net(x), y).item()
    assert result["loss_1d"][2] == pytest.approx(centre, rel=1e-5)
    assert result["loss_2d"][1][1] == pytest.approx(centre, rel=1e-5)
    assert all(torch.equal(weights[k], v) for k, v in net.state_dict().items())


def test_the_top_hessian_eigenvalue_of_a_quadratic_is_found():
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    eigenvalues = torch.tensor([9.0, 3.0, 2.0, 1.0, 0.5, 0.1], dtype=torch.float64)
    a = q @ torch.diag(eigenvalues) @ q.T

    def loss(p):
        return 0.5 * p["w"] @ a @ p["w"]

    result = sharpness.top_eigenvalue(loss, {"w": torch.ones(6, dtype=torch.float64)},
                                      iterations=200, tol=1e-10)
    assert result["eigenvalue"] == pytest.approx(9.0, rel=1e-6)
    assert result["relative_change"] < 1e-10 and result["iterations"] < 200


def test_sharpness_of_a_network_is_positive_and_reports_its_stop_rule():
    torch.manual_seed(0)
    net = CifarResNet(depth=8).eval()
    x, y = digits_like(32)
    result = sharpness.sharpness(net, x, y, iterations=30, tol=1e-2)
    assert result["eigenvalue"] > 0 and 1 <= result["iterations"] <= 30


def test_cka_is_1_for_a_representation_and_itself_and_invariant_to_rotation_and_scale():
    g = torch.Generator().manual_seed(0)
    x = [torch.randn(20, 8, generator=g) for _ in range(3)]
    y = [torch.randn(20, 5, generator=g) for _ in range(3)]
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g))
    assert cka.cka(x, x) == pytest.approx(1.0)
    assert cka.cka(x, [b @ q for b in x]) == pytest.approx(1.0)
    value = cka.cka(x, y)
    assert 0.0 <= abs(value) < 0.9
    assert cka.cka([3.0 * b @ q for b in x], y) == pytest.approx(value)


def test_the_cka_matrix_of_a_net_with_itself_has_a_unit_diagonal():
    torch.manual_seed(0)
    net = CifarResNet(depth=8).eval()
    x, _ = digits_like(40)
    result = cka.cka_matrix(net, net, x, batch_size=20)
    matrix = torch.tensor(result["cka"])
    assert matrix.shape == (3, 3)
    torch.testing.assert_close(matrix.diagonal(), torch.ones(3, dtype=matrix.dtype))
    torch.testing.assert_close(matrix, matrix.T)


@pytest.mark.slow
def test_analyze_writes_each_analysis_of_a_finished_run(smoke_run_copy, tmp_path, capsys):
    import json
    import shutil

    from resnet_exp import analyze

    other = tmp_path / "other"
    shutil.copytree(smoke_run_copy, other)
    assert analyze.main([str(smoke_run_copy), str(other), "--images", "64", "--points", "5",
                         "--grid", "3", "--draws", "2", "--iterations", "5"]) == 0
    out = smoke_run_copy / "analysis"
    for name in ("lesion", "landscape", "sharpness", "cka"):  # conf/analysis/all.yaml
        result = json.loads((out / f"{name}.json").read_text())
        assert result["images"] == 64 and result["seconds"] >= 0, name
    for name in ("lesion", "landscape", "cka"):
        assert (out / f"{name}.png").stat().st_size > 5_000, name
    lesion = json.loads((out / "lesion.json").read_text())
    assert len(lesion["blocks"]) == 9  # ResNet-20
    cka = json.loads((out / "cka.json").read_text())
    # the same weights in both folders: every layer matches its twin exactly
    cross = cka["matrices"][str(other)]["cka"]
    assert all(cross[i][i] == pytest.approx(1.0) for i in range(len(cross)))
    # the figures are images of the run itself (no run of their own), grouped after its curves
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    images = EventAccumulator(str(smoke_run_copy / "tensorboard")).Reload().Tags()["images"]
    assert {"why/lesion", "why/landscape", "why/cka"} <= set(images), images
    assert not (smoke_run_copy / "tensorboard" / "analysis").exists()
    # the report reads each analysis's summary as analysis/<key>, beside the metrics
    from resnet_exp import report

    rep = report.report([str(smoke_run_copy)], tmp_path / "rep", figures=False,
                        metrics=["analysis/sharpness", "analysis/lesion_one_block_mean"])
    sharp = json.loads((out / "sharpness.json").read_text())["eigenvalue"]
    assert f"{sharp:.4g}" in (rep / "report.md").read_text()


def test_analyze_says_in_one_line_what_is_wrong(tmp_path, capsys):
    from resnet_exp import analyze

    assert analyze.main([str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
