"""Sweep files: every example parses; malformed files are refused with the key path and a fix."""

import copy
from pathlib import Path

import pytest
import yaml

from explore.parameters import HARDWARE
from explore.point import base_design, design_point
from explore.spec import SpecError, load_spec, parse_spec, resume_changes
from onn.optics.validity import min_mask_res

SWEEPS = sorted(Path(__file__).parent.parent.glob("sweeps/*.yaml"))
TINY_FILE = Path(__file__).parent.parent / "sweeps" / "tiny.yaml"
TINY = yaml.safe_load(TINY_FILE.read_text())


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_every_sweep_file_parses(path):
    spec = load_spec(path)
    assert spec.name == path.stem and spec.budget.trials >= 1


def mutate(path: str, value):
    raw = copy.deepcopy(TINY)
    *parents, last = path.split("/")
    node = raw
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return raw


DELETE = object()

MALFORMED = [
    # (what changes, new value, fragment the message must contain)
    ("budget/trials", "many", "budget.trials: Input should be a valid integer"),
    ("budget/trials", -3, "budget.trials: Input should be greater than or equal to 1"),
    ("budget/concurrency", 0, "budget.concurrency"),
    ("budgett", {"trials": 2}, "budgett: unknown key"),
    ("fabrication/draw", 3, "fabrication.draw: unknown key; did you mean 'draws'?"),
    ("space", {}, "space: Dictionary should have at least 1 item"),
    ("space/aperture_mm", {"type": "float", "low": 3.0, "high": 1.0}, "`low < high` must hold"),
    ("space/aperture_mm", {"type": "float", "low": 0.0, "high": 1.0, "log": True}, "log range needs low > 0"),
    ("space/aperture_mm", {"type": "floaty", "low": 0.0, "high": 1.0}, "space.aperture_mm"),
    ("space/apertur_mm", {"type": "float", "low": 1.0, "high": 2.0}, "did you mean 'aperture_mm'?"),
    ("space/mask_res", {"type": "choice", "values": []}, "values"),
    ("space/aperture_mm", {"type": "float", "low": 1.0, "hi": 2.0}, "high: required key is missing"),
    ("task/dataset", "mnsit", "unknown dataset 'mnsit'; did you mean 'mnist'?"),
    ("task/teacher", "resnet", "unknown teacher 'resnet'"),
    ("objectives", [{"metric": "acuracy_compensated_val", "direction": "max"}], "did you mean 'accuracy_compensated_val'?"),
    ("objectives", [{"metric": "energy_pj", "direction": "lower"}], "objectives.0.direction: Input should be 'max' or 'min'"),
    ("objectives", [], "objectives: List should have at least 1 item"),
    ("objectives", [{"metric": "energy_pj", "direction": "min"}] * 2, "objectives repeat a metric"),
    ("objectives", [{"metric": "accuracy_compensated_test", "direction": "max"}],
     "'accuracy_compensated_test' is measured on the test split, which a sweep never chooses by"),
    ("objectives", [{"metric": "accuracy_fabricated_test_p5", "direction": "max"}],
     "optimise 'accuracy_fabricated_val_p5', the same score on validation"),
    ("fabrication/compensation", {"method": "ntkd", "epochs": 3}, "fabrication.compensation.epochs: unknown key"),
    ("fabrication/compensation", "finetune", "fabrication.compensation.method: Input should be 'none', 'task' or 'ntkd'"),
    ("fixed/aperture_mm", 2.0, "appear in both `fixed` and `space`"),
    ("fixed/train.lr", 0.1, "training knobs go under `training`"),
    ("training/lr", -1.0, "lr > 0"),
    ("training/epoch", 2, "did you mean 'epochs'?"),
    ("name", "my sweep!", "name: String should match pattern"),
    ("energy", {"constants": "default", "overrides": {"mac_p": 1.0}}, "did you mean 'mac_pj'?"),
    ("gate/min_accuracy", 1.5, "gate.min_accuracy: Input should be less than or equal to 1"),
    ("budget", DELETE, "budget: required key is missing"),
    ("search", {"sampler": "bayes"}, "search.sampler: Input should be 'tpe', 'random', 'gp', 'nsga2' or 'grid'"),
    ("search", {"startup": 3}, "search.startup: unknown key; did you mean 'startup_trials'?"),
]


def _out_of_domain(parameter):
    """A value outside the parameter's domain, and what the refusal says about it."""
    if parameter.options is not None:
        return "no-such-option", "must be one of"
    if parameter.high is not None:
        return parameter.high * 10 + 1, "must be <="
    if parameter.positive:
        return -1.0, "must be > 0"
    return -1, "must be >="


# Every hardware parameter's domain, as a fixed value and as each end of a range / a choice value.
DOMAIN_CASES = []
for _p in HARDWARE:
    _bad, _says = _out_of_domain(_p)
    DOMAIN_CASES.append((f"fixed/{_p.name}", _bad, f"fixed.{_p.name}: {_says}"))
    DOMAIN_CASES.append((f"space/{_p.name}", {"type": "choice", "values": [_bad]}, f"space.{_p.name}.values.0: {_says}"))
    if _p.kind in ("int", "float") and _p.options is None:
        kind = "int" if _p.kind == "int" else "float"
        good = _p.low if _p.low is not None and _p.low > 0 else 1
        if _p.odd:
            good = 3
        low, high = (_bad, good) if not isinstance(_bad, str) and _bad < good else (good, _bad)
        end = "low" if low == _bad else "high"
        DOMAIN_CASES.append((f"space/{_p.name}", {"type": kind, "low": low, "high": high}, f"space.{_p.name}.{end}: {_says}"))
MALFORMED += [
    ("space/mask_res", {"type": "float", "low": 96.0, "high": 160.0}, "mask_res is a whole number; use {type: int"),
    ("space/wavelengths", {"type": "float", "low": 1.0, "high": 2.0}, "not a numeric range; use {type: choice"),
    ("space/backend_depth", {"type": "float", "low": 1.0, "high": 4.0}, "backend_depth is a whole number; use {type: int"),
    ("space/mask_res", {"type": "int", "low": 96, "high": 160, "step": 30}, "must be a multiple of `step`"),
    ("space/mask_res", {"type": "int", "low": 96, "high": 160, "step": 32, "log": True}, "both `log: true` and `step: 32`"),
    ("space/backend_width", {"type": "choice", "values": [8, 8]}, "`values` repeat an entry"),
    ("space/train.ntk_mode", {"type": "choice", "values": ["probe", "fast"]}, "space.train.ntk_mode.values.1: must be one of"),
    ("space/train.lr", {"type": "float", "low": -0.1, "high": 0.1}, "space.train.lr.low: need epochs > 0"),
    ("space/train.batch_size", {"type": "int", "low": 0, "high": 64}, "space.train.batch_size.low"),
    ("realisation/imaging", "full", "realisation.imaging: Input should be 'frame' or 'window'"),
    ("realisation", {"imaging": "window", "baffle": True}, "baffle: true needs imaging: frame"),
]


@pytest.mark.parametrize("path, value, fragment", MALFORMED, ids=[m[0] + "=" + str(m[1])[:20] for m in MALFORMED])
def test_malformed_files_are_refused_with_the_key_and_the_fix(path, value, fragment):
    with pytest.raises(SpecError) as info:
        parse_spec(mutate(path, value), "sweeps/bad.yaml")
    message = str(info.value)
    assert "sweeps/bad.yaml" in message and fragment in message, message


@pytest.mark.parametrize("path, value, fragment", DOMAIN_CASES, ids=[c[0] + "=" + str(c[1])[:24] for c in DOMAIN_CASES])
def test_every_parameters_domain_is_checked_before_anything_runs(path, value, fragment):
    section, name = path.split("/")
    raw = mutate(path, value)
    other = "space" if section == "fixed" else "fixed"
    raw[other].pop(name, None)  # the parameter in one section only: the domain is what is wrong
    if name == "oversampling":  # it replaces mask_res
        raw["space"].pop("mask_res", None)
    with pytest.raises(SpecError) as info:
        parse_spec(raw, "sweeps/bad.yaml")
    assert fragment in str(info.value), str(info.value)


def test_an_odd_only_parameter_refuses_a_range_with_even_values():
    raw = mutate("space/kernel_size", {"type": "int", "low": 3, "high": 7})
    del raw["fixed"]["kernel_size"]
    with pytest.raises(SpecError, match="kernel_size takes odd values only; use an odd low and step: 2"):
        parse_spec(raw, "x.yaml")
    raw["space"]["kernel_size"]["step"] = 2
    assert parse_spec(raw, "x.yaml").space["kernel_size"].grid() == [3, 5, 7]


def test_a_grid_must_hold_the_budget():
    raw = mutate("search", {"sampler": "grid", "grid_points": 2})
    raw["budget"]["trials"] = 13
    with pytest.raises(SpecError, match="the grid holds 12 designs but budget.trials is 13"):
        parse_spec(raw, "x.yaml")
    raw["budget"]["trials"] = 12
    assert parse_spec(raw, "x.yaml").search.sampler == "grid"


def test_there_are_forty_malformed_cases_covering_every_parameter():
    assert len(MALFORMED) + len(DOMAIN_CASES) >= 40
    covered = {path.split("/")[1] for path, _, _ in DOMAIN_CASES}
    assert {p.name for p in HARDWARE} <= covered


def test_not_a_mapping_empty_duplicate_keys_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(SpecError, match="must be a mapping"):
        parse_spec(["a", "list"], "x.yaml")
    for text, fragment in (("", "the file is empty"), ("- name\n- task\n", "found a list"), ("42\n", "found a int"),
                           ("name: a\nname: b\n", "key 'name' appears twice")):
        path = tmp_path / "f.yaml"
        path.write_text(text)
        with pytest.raises(SpecError, match=fragment):
            load_spec(path, ["budget.trials=2"])  # overrides on a broken file: still the clear error
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="no such sweep file"):
        load_spec(tmp_path / "missing.yaml")


def test_overrides_reach_nested_and_dotted_keys(tmp_path):
    path = tmp_path / "s.yaml"
    raw = copy.deepcopy(TINY)
    raw["space"]["train.ntk_beta"] = {"type": "float", "low": 0.1, "high": 1.0}
    path.write_text(yaml.safe_dump(raw))
    spec = load_spec(path, ["budget.trials=3", "space.train.ntk_beta.high=5", "training.epochs=1"])
    assert spec.budget.trials == 3 and spec.space["train.ntk_beta"].high == 5 and spec.training["epochs"] == 1
    with pytest.raises(SpecError, match="key.path=value"):
        load_spec(path, ["budget.trials"])


def test_design_point_maps_parameters_onto_the_preset():
    base = base_design(channels=1, task="classify")
    point = design_point({"aperture_mm": 3.0, "backend_depth": 2, "backend_width": 64, "read_noise_fs": 0.02,
                          "train.ntk_beta": 2.0}, base=base, training={"epochs": 1}, seed=5)
    assert point.design.aperture_mm == 3.0 and point.design.hidden == (64, 32)
    assert point.design.sensor.read_noise_fs == 0.02 and point.design.kernel_size == base.kernel_size
    assert point.train.ntk_beta == 2.0 and point.train.epochs == 1 and point.train.seed == 5
    again = design_point({"train.ntk_beta": 2.0, "backend_width": 64, "aperture_mm": 3.0, "backend_depth": 2,
                          "read_noise_fs": 0.02}, base=base, training={"epochs": 1}, seed=5)
    assert point.config_hash == again.config_hash


def test_the_aperture_sets_the_kernel_count_unless_the_sweep_fixes_it():
    base = base_design(channels=1, task="classify")  # the mono preset pins 8 kernels
    small = design_point({"aperture_mm": 1.0, "suboptic_mm": 0.4}, base=base, training={}, seed=0).design
    large = design_point({"aperture_mm": 3.0, "suboptic_mm": 0.4}, base=base, training={}, seed=0).design
    assert (small.kernels(), large.kernels()) == (2, 18)  # 2x2 and 6x6 sub-optics
    fixed = design_point({"aperture_mm": 3.0, "n_kernels": 4}, base=base, training={}, seed=0).design
    assert fixed.kernels() == 4


def test_haze_takes_a_ratio_or_the_fitted_value_at_the_final_geometry():
    from explore.parameters import value_problems
    from onn.optics.frame import fitted_haze

    base = base_design(channels=1, task="classify")
    design = design_point({"haze": "fitted", "n_kernels": 4, "suboptic_mm": 0.5, "oversampling": 1.5}, base=base,
                          training={}, seed=0).design
    oversampling = design.mask_res / min_mask_res(design.geometry())
    assert 1.5 <= oversampling < 1.51 and design.haze == pytest.approx(fitted_haze(1, 0.5, oversampling))
    assert design_point({"haze": 2}, base=base, training={}, seed=0).design.haze == 2.0
    problems = dict(value_problems({"haze": "lots"}, {}))
    assert "'fitted'" in problems["fixed.haze"] and not value_problems({"haze": "fitted"}, {})
    assert "fixed.haze" in dict(value_problems({"haze": -1.0}, {}))


@pytest.mark.parametrize("suboptic_mm", [0.35, 0.4, 0.5092404218303636, 0.6])  # 0.509...: rounded down, 3 kernels lost a row
def test_a_kernel_count_alone_gets_the_smallest_aperture_that_holds_it(suboptic_mm):
    base = base_design(channels=1, task="classify")
    for n_kernels in range(1, 25):
        design = design_point({"n_kernels": n_kernels, "suboptic_mm": suboptic_mm}, base=base, training={},
                              seed=0).design
        assert design.kernels() == n_kernels, (n_kernels, design.aperture_mm)
        assert design.layout().n_suboptics >= 2 * n_kernels
        smaller = design.with_(aperture_mm=design.aperture_mm - 1e-3, n_kernels=None)
        assert smaller.layout().n_suboptics < 2 * n_kernels  # and none smaller would do


def generated(readme: str, name: str) -> str:
    start = readme.index(f"<!-- {name}: generated")
    body = readme[readme.index("\n", start) + 1:readme.index(f"<!-- end {name} -->")]
    return body.strip()


def test_the_readme_tables_are_the_generated_ones():
    from explore.columns import markdown_table as metric_table
    from explore.parameters import markdown_table as parameter_table

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert generated(readme, "metrics") == metric_table()
    assert generated(readme, "parameters") == parameter_table()


# --- property: any mutation of a shipped sweep file validates or is refused with a key path ---------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SHIPPED = {p.stem: yaml.safe_load(p.read_text()) for p in SWEEPS}
ODD_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                       st.text(max_size=8), st.lists(st.integers(), max_size=3),
                       st.dictionaries(st.text(max_size=6), st.integers(), max_size=2))


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, prefix + (i,))


@st.composite
def mutants(draw):
    name = draw(st.sampled_from(sorted(SHIPPED)))
    raw = copy.deepcopy(SHIPPED[name])
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(raw) if p]
        path = draw(st.sampled_from(paths))
        parent = raw
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["delete", "replace", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "replace":
            parent[path[-1]] = draw(ODD_VALUES)
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(ODD_VALUES)
    return raw


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutants())
def test_a_mutated_sweep_file_validates_or_names_the_key(raw):
    try:
        parse_spec(raw, "mutant.yaml")
    except SpecError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip() and line.strip() != "invalid sweep file:"]
        assert lines and all(line.startswith("mutant.yaml: ") and line.count(":") >= 2 for line in lines), str(exc)


def test_a_resume_may_change_how_trials_run_but_not_what_they_compute():
    saved = load_spec(TINY_FILE)
    faster = load_spec(TINY_FILE, ["budget.concurrency=4", "budget.trials=10", "budget.stop_when_flat={patience: 3}"])
    allowed, refused = resume_changes(saved, faster)
    assert refused == [] and allowed[0] == "budget.concurrency" and allowed[-1] == "budget.trials"
    assert "budget.stop_when_flat.patience" in allowed
    other = load_spec(TINY_FILE, ["training.epochs=1", "space.backend_width.values=[8]"])
    assert resume_changes(saved, other) == ([], ["space.backend_width.values", "training.epochs"])


def test_segmentation_is_imaged_by_the_window_model_unless_the_file_asks_for_the_frame():
    """Its three-scale designs are beyond the full-frame model: window by default, frame refused."""
    raw = mutate("task", {"dataset": "nuclei"})
    raw.get("realisation", {}).pop("imaging", None)
    assert parse_spec(raw).realisation.imaging == "window"
    assert parse_spec(TINY).realisation.imaging == "frame"  # classification: the full frame
    raw["realisation"] = {**raw.get("realisation", {}), "imaging": "frame"}
    with pytest.raises(SpecError, match="set realisation.imaging: window"):
        parse_spec(raw)
