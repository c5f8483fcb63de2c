"""Every named system builds: its preset fits its dataset and its teacher is registered."""

import pytest

from explore.systems import SYSTEMS, build_student
from onn.data import DatasetError, load_dataset
from onn.teachers import TEACHERS


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_every_system_builds(name):
    system = SYSTEMS[name]
    assert system.teacher in TEACHERS
    try:
        data = load_dataset(system.dataset)
    except DatasetError:
        pytest.skip(f"{system.dataset} needs a local copy")
    model = build_student(system.design, data, seed=0)
    out = model(data.train.tensors[0][:2])
    expected = (2, data.n_classes) if data.task == "classify" else (2, 1, data.image_size, data.image_size)
    assert out.shape == expected


def test_each_systems_transfer_weights_are_the_ones_validation_chose():
    """`System.transfer` is what `explore.experiments.transfer_weights` chose on validation, as
    recorded in the committed table: the constants cannot drift from their evidence unnoticed."""
    from pathlib import Path

    import polars as pl

    from explore.experiments.transfer_weights import chosen
    from onn.train import TrainConfig

    table = pl.read_csv(Path(__file__).parent.parent / "benchmarks" / "tables" / "transfer_weights.csv")
    for name, best in chosen(table).items():
        weights = SYSTEMS[name].transfer
        TrainConfig(**weights)  # every key is a training setting
        if "kd" in best:
            assert weights["kd_alpha"] == best["kd"]["kd_alpha"], name
            chosen_t = best["kd"].get("kd_temperature") or TrainConfig.kd_temperature  # blank: the default
            assert weights.get("kd_temperature", TrainConfig.kd_temperature) == chosen_t, name
        if "ntkd" in best:
            centred = bool(best["ntkd"]["ntk_centre"])
            assert (weights["ntk_beta"], weights["ntk_centre"]) == (best["ntkd"]["ntk_beta"], centred), name
            assert weights["ntk_normalise"] == ("frobenius" if centred else "trace"), name


def test_the_sweep_files_train_with_their_systems_ntkd_weights():
    """Each system's sweep file trains NTKD with the weights validation chose for the system, unless
    its search space samples that weight."""
    from pathlib import Path

    import yaml

    from onn.train import TrainConfig

    for name in ("mono", "poly", "seg"):
        spec = yaml.safe_load((Path(__file__).parent.parent / "sweeps" / f"{name}.yaml").read_text())
        training, sampled = spec.get("training", {}), set(spec.get("space", {}))
        for key in ("ntk_beta", "ntk_centre", "ntk_normalise"):
            if f"train.{key}" not in sampled:
                chosen = SYSTEMS[name].transfer.get(key, getattr(TrainConfig, key))
                assert training.get(key, getattr(TrainConfig, key)) == chosen, (name, key)
