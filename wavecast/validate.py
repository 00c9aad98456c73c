"""Input checks that run before any work, so bad data fails in seconds and writes nothing."""

from __future__ import annotations

from wavecast.config import RetrainConfig
from wavecast.generate import load_series
from wavecast.windows import check_length


def validate_inputs(config: RetrainConfig) -> int:
    """The series' length; InvalidInputError with one actionable line if it cannot be trained on."""
    values = load_series(config.series).values
    check_length(len(values), config.windows)
    return len(values)
