"""Isotonic recalibration of package probabilities (pool-adjacent-violators). Pure.

Fitted on packages whose outcome is known (their predicted probability, and whether they
became valid in time), it maps a predicted ``p`` to the share observed valid among
packages predicted like it, under the only assumption that a higher prediction never
means a lower share. Not applied by the scorer yet: fitting it needs each matured
package's prediction *as it was* days before its deadline, which the scorer does not
keep (docs/forecast.md section 6, "Calibration"); ``tools/evaluate`` uses it to measure
what it would change.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class IsotonicMap:
    """A non-decreasing step function of the predicted probability, interpolated linearly
    between the centres of its blocks and flat beyond the first and the last."""

    #: Mean predicted probability of each block, increasing.
    centres: tuple[float, ...]
    #: Observed share of each block, non-decreasing.
    values: tuple[float, ...]
    #: Packages (weight) of each block.
    weights: tuple[float, ...]

    def __call__(self, probability: float) -> float:
        if not self.centres:
            return probability
        index = bisect_right(self.centres, probability)
        if index == 0:
            return self.values[0]
        if index == len(self.centres):
            return self.values[-1]
        left, right = self.centres[index - 1], self.centres[index]
        share = (probability - left) / (right - left)
        return self.values[index - 1] + share * (self.values[index] - self.values[index - 1])


def fit_isotonic(outcomes: Iterable[tuple[float, bool]], min_block: float = 0.0) -> IsotonicMap:
    """Pool-adjacent-violators over ``(predicted, valid)`` pairs sorted by prediction.
    Blocks lighter than ``min_block`` packages are pooled with their neighbour (an isotonic
    fit of a few packages is a step of 0s and 1s)."""
    # Each block: [sum of predictions, sum of outcomes, weight].
    blocks: list[list[float]] = []
    for predicted, valid in sorted(outcomes, key=lambda pair: pair[0]):
        blocks.append([predicted, 1.0 if valid else 0.0, 1.0])
        while len(blocks) > 1 and (
            blocks[-2][1] / blocks[-2][2] >= blocks[-1][1] / blocks[-1][2] or blocks[-2][2] < min_block
        ):
            last = blocks.pop()
            for position in range(3):
                blocks[-1][position] += last[position]
    if len(blocks) > 1 and blocks[-1][2] < min_block:
        last = blocks.pop()
        for position in range(3):
            blocks[-1][position] += last[position]
    return IsotonicMap(
        tuple(total / weight for total, _, weight in blocks),
        tuple(valid / weight for _, valid, weight in blocks),
        tuple(weight for _, _, weight in blocks),
    )
