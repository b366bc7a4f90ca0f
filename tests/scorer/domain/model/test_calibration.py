"""Isotonic recalibration (services/scorer/domain/model/calibration.py): pool-adjacent-violators
on known inputs, a monotone result, and a miscalibrated model mapped back to the truth."""

from __future__ import annotations

import random

import pytest

from services.scorer.domain.model.calibration import fit_isotonic


def test_violators_are_pooled_into_their_mean() -> None:
    # Outcomes in order of prediction: 1, 0, 1, 1 -> blocks {1, 0} pooled to 0.5, then 1.
    fitted = fit_isotonic([(0.1, True), (0.2, False), (0.3, True), (0.4, True)])
    assert fitted.values == (0.5, 1.0)
    assert fitted.weights == (2.0, 2.0)
    assert fitted.centres == pytest.approx((0.15, 0.35))
    # Interpolated between the centres, flat beyond.
    assert fitted(0.25) == pytest.approx(0.75)
    assert fitted(0.0) == 0.5 and fitted(0.9) == 1.0


def test_an_empty_fit_leaves_the_probability_alone() -> None:
    fitted = fit_isotonic([])
    assert fitted(0.37) == 0.37


def test_blocks_hold_at_least_the_minimum() -> None:
    rng = random.Random(5)
    pairs = [(rng.random(), rng.random() < 0.5) for _ in range(500)]
    fitted = fit_isotonic(pairs, min_block=50)
    assert all(weight >= 50 for weight in fitted.weights)
    assert sum(fitted.weights) == 500
    assert list(fitted.values) == sorted(fitted.values)


def test_an_optimistic_model_is_mapped_back_to_what_happens() -> None:
    # The truth is p², the model says p: in the middle it is optimistic by up to 0.25.
    rng = random.Random(9)
    train = [(p, rng.random() < p * p) for p in (rng.random() for _ in range(20000))]
    fitted = fit_isotonic(train, min_block=200)
    for p in (0.2, 0.5, 0.8):
        assert fitted(p) == pytest.approx(p * p, abs=0.04)
    # Held-out packages: the Brier score improves.
    test = [(p, rng.random() < p * p) for p in (rng.random() for _ in range(5000))]
    before = sum((p - valid) ** 2 for p, valid in test) / len(test)
    after = sum((fitted(p) - valid) ** 2 for p, valid in test) / len(test)
    assert after < before - 0.01
