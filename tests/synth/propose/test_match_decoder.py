"""Decoding a variable from an activation: the sampled decoder is the full one on a row sample."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mechsynth.synth.propose import match_stats
from mechsynth.synth.propose.match_stats import decode_accuracy, sampled_decode_accuracy


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), rows=st.integers(4, 60), classes=st.integers(2, 4))
def test_sampled_decoder_is_the_full_decoder_on_every_kth_row(seed: int, rows: int, classes: int) -> None:
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, classes, (rows,), generator=g).double()
    act = torch.randn(rows, 3, generator=g, dtype=torch.float64) + codes[:, None]
    old = match_stats.DECODE_ROWS
    try:
        match_stats.DECODE_ROWS = 10**6  # fewer rows than the sample: every row is used
        assert sampled_decode_accuracy(act, codes) == decode_accuracy(act, codes)
        match_stats.DECODE_ROWS = 3
        step = max(1, rows // 3)
        assert sampled_decode_accuracy(act, codes) == decode_accuracy(act[::step], codes[::step])
    finally:
        match_stats.DECODE_ROWS = old


def test_a_variable_written_in_one_direction_decodes_perfectly() -> None:
    codes = torch.tensor([0.0, 1.0, 2.0] * 20)
    act = torch.stack([codes * 3.0, torch.zeros_like(codes)], 1)
    assert sampled_decode_accuracy(act, codes) == 1.0


def test_columns_are_picked_from_the_sampled_rows() -> None:
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 3, (40,), generator=g).double()
    act = torch.randn(40, 4, generator=g, dtype=torch.float64)
    act[:, 2] += 4.0 * codes
    old = match_stats.DECODE_ROWS
    try:
        match_stats.DECODE_ROWS = 7
        step = max(1, 40 // 7)
        expected = decode_accuracy(act[::step][:, [2, 3]], codes[::step])
        assert sampled_decode_accuracy(act, codes, [2, 3]) == expected
    finally:
        match_stats.DECODE_ROWS = old
