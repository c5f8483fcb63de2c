"""Faults injected into a sweep, for the fault-tolerance tests (never set in normal use).

A sweep started with ``EXPLORE_INJECT_FAULT="<kind>:<trial index>,..."`` in its environment gets a
`Faults` in every trial's context (`explore.context.TrialContext.faults`); the trial asks it, at
the start of training, for what to do. Kinds:

- ``raise``: the trial raises (the scheduler retries it, then records it as failed);
- ``die``: the worker process exits at once, as on a lost node;
- ``nan``: training runs with an absurd learning rate and diverges (recorded as failed);
- ``driver``: Tune's controller fails once, on that trial's result (`FaultInjector`);

and, for the whole sweep, ``permute_test_labels`` (no index): every worker sees the test split with
its labels permuted (a fixed permutation), the check that the test split cannot steer a sweep.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import TensorDataset

from onn.data import TaskData
from onn.train import TrainConfig

FAULT_ENV = "EXPLORE_INJECT_FAULT"
Kind = Literal["raise", "die", "nan", "driver"]


class InjectedFault(RuntimeError):
    """The failure a ``raise`` fault injects."""


@dataclass(frozen=True)
class Faults:
    by_index: tuple[tuple[int, str], ...] = ()
    permute_test_labels: bool = False

    @classmethod
    def parse(cls, text: str) -> "Faults":
        """``"raise:1,nan:2"`` -> Faults; raises ValueError for a malformed entry or an unknown kind."""
        entries, permute = [], False
        for item in filter(None, (part.strip() for part in text.split(","))):
            if item == "permute_test_labels":
                permute = True
                continue
            kind, _, index = item.partition(":")
            if kind not in Kind.__args__ or not index.isdigit():
                raise ValueError(f"{FAULT_ENV}: {item!r} must be permute_test_labels or look like <kind>:<trial "
                                 f"index> with kind one of {', '.join(Kind.__args__)}")
            entries.append((int(index), kind))
        return cls(tuple(entries), permute)

    def data(self, data: TaskData) -> TaskData:
        """``data`` as this sweep's workers see it (test labels permuted if asked)."""
        if not self.permute_test_labels:
            return data
        images, labels = data.test.tensors
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(12345))
        return dataclasses.replace(data, test=TensorDataset(images, labels[order]))

    @classmethod
    def from_environment(cls) -> "Faults | None":
        text = os.environ.get(FAULT_ENV, "")
        return cls.parse(text) if text else None

    def kind(self, trial_index: int) -> str | None:
        return next((kind for index, kind in self.by_index if index == trial_index), None)

    def before_training(self, trial_index: int, config: TrainConfig) -> TrainConfig:
        """Act out this trial's fault, if it has one; returns the training config to use."""
        match self.kind(trial_index):
            case "raise":
                raise InjectedFault(f"{FAULT_ENV}: injected failure in trial {trial_index}")
            case "die":
                os._exit(1)  # the worker process dies mid-trial, as on a lost node
            case "nan":
                return dataclasses.replace(config, lr=1e12)
        return config


def fault_injector(faults: Faults, mark: Path):
    """A Tune callback that makes Tune's controller raise once, on the result of the trial marked
    ``driver`` (``mark`` records that it happened, across the driver's restore)."""
    from ray import tune

    class FaultInjector(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            index = result.get("trial_index")
            if index is not None and faults.kind(index) == "driver" and not mark.exists():
                mark.touch()
                raise InjectedFault(f"{FAULT_ENV}: injected failure of Tune's controller on trial {index}")

    return FaultInjector()
