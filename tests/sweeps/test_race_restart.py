"""A race killed and started again: its rounds numbered as one uninterrupted race's, no task trained twice, the
same verdict. First :func:`run_race` on simulated values (a kill at each of its trainings), then the real
``betasweep race`` command, SIGKILLed while a round's extension trains, started again with the same arguments."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from betasweep.sweeps.race import ConfigRungs, run_race, rungs_of
from betasweep.sweeps.spec import RaceConfig

R0 = 24_000
MEANS = {"a": 0.9, "b": 0.895, "c": 0.85}  # c worse, b equivalent to a (margin 0.03): 4 rounds, extend then seeds
RACE = RaceConfig(max_seeds=6, max_images=4 * R0, margin=0.03)
RUNGS = rungs_of(R0, RACE.max_images)


class Killed(Exception):
    """The driver's process dies here (as SIGKILL would: nothing after it runs)."""


class Simulated:
    """A study's side of a race on fixed simulated values: seed ``s`` of configuration ``k`` at rung ``r`` scores
    the same whichever process trains it. ``train`` records its calls, trains each (configuration, seed, rung)
    once, and with ``kill_at`` = n dies in its n-th call after training half the plan's configurations."""

    def __init__(self, kill_at: int | None = None, stop_at: int | None = None) -> None:
        self.table = {k: ConfigRungs(f"config {k}") for k in MEANS}
        self.calls: list[int] = []
        self.trained: list[tuple[str, int, int]] = []
        self.kill_at, self.stop_at = kill_at, stop_at
        self.stored: dict | None = None
        for key in MEANS:
            for seed in range(2):
                self.fill(key, seed, R0)

    def fill(self, key: str, seed: int, images: int) -> None:
        at = self.table[key].values.setdefault(seed, {})
        for i, rung in enumerate(RUNGS):
            if rung <= images and rung not in at:
                noise = np.random.default_rng([list(MEANS).index(key), seed, rung]).normal(0, 0.005)
                at[rung] = MEANS[key] + np.random.default_rng([seed]).normal(0, 0.01) + noise
                self.table[key].images += rung - (RUNGS[i - 1] if i else 0)
                self.trained.append((key, seed, rung))

    def train(self, number: int, plan: dict) -> bool | None:
        self.calls.append(number)
        if self.stop_at == len(self.calls) - 1:
            return None  # the deadline: nothing trained
        for i, (key, (seeds, images)) in enumerate(plan.items()):
            if self.kill_at == len(self.calls) - 1 and i == len(plan) // 2:
                raise Killed
            for seed in range(seeds):
                self.fill(key, seed, images)
        return True

    def on_round(self, round_, labels, state) -> None:
        self.stored = json.loads(json.dumps(state))  # what the study keeps (its user attribute ``race``)

    def race(self, state=None):
        return run_race(lambda: self.table, self.train, RACE, "score", rungs=RUNGS, pair=True, state=state,
                        on_round=self.on_round)


def test_the_simulated_race_has_four_rounds_that_extend_then_add_seeds():
    plain = Simulated()
    result = plain.race()
    assert [(r.number, r.action) for r in result.rounds] == [(0, "extend"), (1, "seeds"), (2, "seeds"), (3, None)]
    assert plain.calls == [1, 2, 3] and result.words() == {"a": "best", "b": "equivalent", "c": "worse"}
    assert result.lines[0].split(": ")[1].startswith("decided after 3 rounds")


@pytest.mark.parametrize("kill_at", [0, 1, 2])
def test_a_race_killed_in_a_rounds_training_resumes_with_the_next_number_and_the_same_verdict(kill_at):
    plain = Simulated()
    expected = plain.race()
    killed = Simulated(kill_at=kill_at)
    with pytest.raises(Killed):
        killed.race()
    stored = copy.deepcopy(killed.stored)
    assert stored["round"] == kill_at  # the last round played: the killed training was round kill_at + 1's
    resumed = killed.race(state=stored)
    numbers = list(range(kill_at + 1)) + [r.number for r in resumed.rounds]
    assert numbers == [r.number for r in expected.rounds]  # 0, 1, 2, 3: none twice, none skipped
    # The killed training is taken up under its own number; no (configuration, seed, rung) is trained twice.
    assert killed.calls == plain.calls[:kill_at + 1] + plain.calls[kill_at:]
    assert len(killed.trained) == len(set(killed.trained)) and sorted(killed.trained) == sorted(plain.trained)
    assert resumed.lines == expected.lines  # "decided after 3 rounds" included, and the cost
    assert resumed.rounds[0].line(resumed.labels, RACE.margin).startswith(f"round {kill_at + 1} at ")


def test_a_race_stopped_at_its_deadline_resumes_with_the_next_number():
    stopped = Simulated(stop_at=1)
    first = stopped.race()
    assert first.status == "stopped" and [r.number for r in first.rounds] == [0, 1, 2]
    assert first.lines[0].split(": ")[1].startswith("stopped at its deadline after 2 rounds")
    calls = len(stopped.calls)
    resumed = stopped.race(state=copy.deepcopy(stopped.stored))
    numbers = [r.number for r in first.rounds + resumed.rounds]
    assert numbers == list(range(len(numbers)))  # continuous: the resumed race's first round is 3
    assert stopped.calls[calls] == 3 and resumed.status == "decided"  # the stopped training, taken up as round 3's
    assert len(stopped.trained) == len(set(stopped.trained))
