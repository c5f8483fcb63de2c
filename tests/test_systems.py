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
