"""Energy model (SPEC §5): hand-counted MACs, monotonicity, the paper's figures, the presets."""

import dataclasses

import pytest
import torch
from torch import nn

from onn.design import PRESETS
from onn.energy import (CONSTANTS, PAPER_HYBRID_PIXELS, PAPER_PLAIN_PIXELS, PAPER_SCENE_PX, PAPER_SEGMENTATION,
                        EnergyConstants, breakdown_table, digital_conv_energy, energy_from_counts, get_constants,
                        hybrid_energy, network_energy, optical_conv_macs, reproduce_paper_segmentation)
from onn.layers import OpticalConv
from onn.macs import count_macs
from onn.models import HybridONN, build_hybrid
from onn.teachers import alexnet_small, lenet5

SHAPES = {"mono": (1, 28), "poly": (3, 32)}  # preset -> (channels, image size)
TERMS = ("light_source_pj", "capture_fixed_pj", "readout_pj", "adc_pj", "digital_add_pj", "digital_mac_pj")


class Adapter(nn.Module):
    """Gives a plain module the ``forward(x, *, noise=...)`` signature that `count_macs` calls."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x, *, generator=None, noise=True):
        return self.module(x)


def preset(name):
    channels, size = SHAPES[name]
    return build_hybrid(PRESETS[name], in_channels=channels, image_size=size, n_outputs=10)


@pytest.mark.parametrize("module, shape, hand_count", [
    (nn.Linear(10, 7), (1, 10), 10 * 7),
    (nn.Linear(10, 7), (1, 5, 10), 5 * 10 * 7),  # applied at 5 positions
    (nn.Conv2d(3, 4, 3, padding=1), (1, 3, 8, 8), 4 * 3 * 3 * 3 * 8 * 8),
    (nn.Conv2d(3, 4, 3, stride=2), (1, 3, 9, 9), 4 * 3 * 3 * 3 * 4 * 4),  # 4x4 outputs
    (nn.Conv2d(4, 8, 3, padding=1, groups=2), (1, 4, 5, 5), 8 * (4 // 2) * 3 * 3 * 5 * 5),
    (nn.ConvTranspose2d(4, 2, 2, stride=2), (1, 4, 5, 5), 4 * 5 * 5 * 2 * 2 * 2),  # each input pixel x out x k²
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)), (1, 1, 6, 6),
     2 * 9 * 16 + 32 * 3),
])
def test_macs_match_hand_counts(module, shape, hand_count):
    assert count_macs(Adapter(module), torch.zeros(shape)).macs == hand_count


def test_optics_alone_cost_only_capture():
    optics = Adapter(OpticalConv(4, 5, colours=3))
    assert count_macs(optics, torch.zeros(1, 3, 16, 16)).macs == 0  # the optical conv is free
    model = preset("poly")
    free_backend = dataclasses.replace(CONSTANTS["default"], mac_pj=0.0, add_pj=0.0)
    e = hybrid_energy(model, constants=free_backend)
    assert e.digital_mac_pj == e.digital_add_pj == 0
    assert e.total_pj == pytest.approx(e.capture_pj) and e.capture_pj > 0
    default = CONSTANTS["default"]
    none = energy_from_counts(pixels_read=1000, digital_macs=0, constants=default)
    assert none.total_pj == pytest.approx(1000 * (default.pixel_readout_pj + default.adc_pj_per_pixel))


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(EnergyConstants)])
def test_raising_any_constant_never_lowers_the_total(name):
    model = preset("mono")
    for base in CONSTANTS.values():
        raised = dataclasses.replace(base, **{name: getattr(base, name) * 2 + 1.0})
        low, high = hybrid_energy(model, constants=base), hybrid_energy(model, constants=raised)
        assert high.total_pj > low.total_pj  # every count is > 0 for a hybrid, so strictly
        assert all(getattr(high, t) >= getattr(low, t) for t in TERMS)
        digital_low = digital_conv_energy(model, constants=base)
        digital_high = digital_conv_energy(model, constants=raised)
        assert digital_high.total_pj >= digital_low.total_pj


def test_paper_segmentation_figures_are_reproduced_within_5_percent():
    for name, (ours_j, paper_j) in reproduce_paper_segmentation().items():
        assert ours_j == pytest.approx(paper_j, rel=0.05), name
    paper = CONSTANTS["paper"]
    # The two capture energies themselves, and the per-MAC energy each figure implies.
    for pixels, (_, _, capture_j) in ((PAPER_PLAIN_PIXELS, PAPER_SEGMENTATION["compact_digital"]),
                                      (PAPER_HYBRID_PIXELS, PAPER_SEGMENTATION["hybrid"])):
        capture = energy_from_counts(pixels_read=pixels, digital_macs=0, constants=paper)
        assert capture.total_j == pytest.approx(capture_j)
    for macs, total_j, capture_j in PAPER_SEGMENTATION.values():
        assert (total_j - capture_j) / macs * 1e12 == pytest.approx(paper.mac_pj, rel=0.01)
    # The documented hybrid pixel count is what our seg model reads at the assumed scene size.
    seg = HybridONN(PRESETS["seg"], in_channels=3, image_size=PAPER_SCENE_PX, n_outputs=1)
    assert seg.pixels_read() == PAPER_HYBRID_PIXELS


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_bad_constant_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="adc_pj_per_pixel must be a finite number >= 0"):
        dataclasses.replace(CONSTANTS["default"], adc_pj_per_pixel=bad)
    with pytest.raises(ValueError, match="mac_pj must be"):
        EnergyConstants.from_overrides({"mac_pj": -0.5})


def test_overrides_replace_fields_and_unknown_keys_name_the_closest():
    c = EnergyConstants.from_overrides({"mac_pj": 1.5, "light_source_pj": 7.0}, base="paper")
    assert (c.mac_pj, c.light_source_pj, c.capture_fixed_pj) == (1.5, 7.0, CONSTANTS["paper"].capture_fixed_pj)
    with pytest.raises(KeyError, match="did you mean 'pixel_readout_pj'"):
        EnergyConstants.from_overrides({"pixel_read_out_pj": 1.0})
    with pytest.raises(KeyError, match="did you mean 'paper'"):
        get_constants("papr")


@pytest.mark.parametrize("constants", CONSTANTS)
@pytest.mark.parametrize("name", SHAPES)
def test_presets_terms_sum_and_the_digital_equivalents_cost_more(name, constants):
    c, model = CONSTANTS[constants], preset(name)
    optics = model.optics[0]
    colours, size, kernels = optics.colours, model.image_size, optics.n_kernels
    e = hybrid_energy(model, constants=c)
    assert e.pixels_read == kernels * 2 * colours * size**2
    assert e.digital_adds == kernels * size**2 * (2 * colours - 1)
    assert e.total_pj == pytest.approx(sum(getattr(e, t) for t in TERMS))
    assert e.total_pj == pytest.approx(c.light_source_pj + c.capture_fixed_pj + e.pixels_read * (
        c.pixel_readout_pj + c.adc_pj_per_pixel) + e.digital_adds * c.add_pj + e.digital_macs * c.mac_pj)
    assert e.as_dict()["total_pj"] == e.total_pj and e.total_j == pytest.approx(e.total_pj * 1e-12)

    assert optical_conv_macs(model) == kernels * colours * PRESETS[name].kernel_size**2 * size**2
    digital = digital_conv_energy(model, constants=c)
    assert digital.digital_macs == e.digital_macs + optical_conv_macs(model)
    assert digital.pixels_read == colours * size**2
    assert digital.total_pj > e.total_pj

    build = {"mono": lenet5, "poly": alexnet_small}[name]
    channels = SHAPES[name][0]
    teacher = build(channels, size, 10, torch.zeros(channels), torch.ones(channels))
    assert network_energy(teacher, torch.zeros(1, channels, size, size), c).total_pj > e.total_pj


def test_hybrid_energy_leaves_training_mode_alone_and_the_table_lists_every_term():
    model = preset("mono").train()
    e = hybrid_energy(model)
    assert model.training
    table = breakdown_table({"hybrid": e, "digital": digital_conv_energy(model)})
    assert len(table.splitlines()) == 2 + 11 and "sensor read-out" in table and "12,544" in table
