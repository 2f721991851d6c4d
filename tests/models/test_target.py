"""Tasks and targets: each readout form, each special token, padded batches with a key mask."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mechsynth.models.bridge import build_bridge
from mechsynth.models.target import Readout, Target, TargetError, Task

VOCAB = (0, 1, 2)
# Token ids: the vocabulary, then one id per special token.
IDS = {0: 0, 1: 1, 2: 2, "BOS": 3, "EOS": 4, "SEP": 5, "PAD": 6}


def copy_label(x: list) -> list:
    return list(x)


def first_position(x: list) -> list[int]:
    return [0]


def after_sep(x: list) -> list[int]:
    return list(range(x.index("SEP") + 1, len(x)))


def with_sep(rng: random.Random, length: int) -> list:
    body = [rng.choice(VOCAB) for _ in range(length - 1)]
    cut = rng.randint(0, length - 1)
    return body[:cut] + ["SEP"] + body[cut:]


def task(**kw) -> Task:
    base = dict(name="t", vocab=VOCAB, min_len=1, max_len=5, labeller=copy_label, output_vocab=VOCAB)
    return Task(**{**base, **kw})


def network(seed: int = 0, attention_dir: str = "bidirectional") -> object:
    return build_bridge(dict(
        n_layers=2, d_model=16, d_head=4, n_heads=2, d_mlp=32, d_vocab=len(IDS), d_vocab_out=3, n_ctx=10,
        act_fn="relu", normalization_type="LN", attention_dir=attention_dir, seed=seed,
    ))


def target(t: Task, seed: int = 0, attention_dir: str = "bidirectional") -> Target:
    return Target("t", network(seed, attention_dir), t, IDS, output_values=VOCAB)


# --- readout ------------------------------------------------------------------------------------
def test_named_readouts_read_every_or_the_last_position():
    assert task().readout is Readout.ALL and task(readout="all").read_positions([1, 2, 0]) == [0, 1, 2]
    assert task(readout="last").read_positions([1, 2, 0]) == [2]
    assert task(readout="last").readout_positions(4) == [3]  # the length form stays for named readouts


def test_a_readout_function_reads_positions_of_the_input_itself():
    t = task(readout=after_sep, sep="SEP", generator=with_sep, min_len=2)
    x = [1, "SEP", 2, 0]
    assert t.read_positions(x) == [2, 3] and t.readout_name == "after_sep"
    assert t.label([x]) == [[None, None, 2, 0]]
    with pytest.raises(TargetError, match="depends on the input"):
        t.readout_positions(4)


@pytest.mark.parametrize(
    "readout, message",
    [("first", "readout must be"), (lambda x: [len(x)], "outside"), (lambda x: ["a"], "readout failed")],
)
def test_a_bad_readout_is_a_one_line_error(readout, message):
    with pytest.raises(TargetError, match=message) as err:
        task(readout=readout).read_positions([1, 2])
    assert "\n" not in str(err.value)


def test_decode_reads_only_where_the_task_reads():
    t = target(task(readout=first_position))
    xs = task().sample(20, seed=1, length=4)
    rows = t.predict(xs)
    assert all(row[0] is not None and row[1:] == [None, None, None] for row in rows)
    assert target(task()).predict(xs)[0][0] == rows[0][0]  # the same network output where read


# --- special tokens -----------------------------------------------------------------------------
def test_hidden_bos_is_before_the_input_and_outside_it():
    t = target(task(bos="BOS"))
    x = [2, 0, 1]
    assert t.position_offset == 1 and t.task.sample(1, 0, length=3)[0] != ["BOS"]
    assert t.tokens([x]).tolist() == [[3, 2, 0, 1]]
    assert len(t.predict([x])[0]) == 3


def test_bos_in_the_input_is_position_zero_and_can_be_read():
    t = target(task(bos="BOS", bos_in_input=True, eos="EOS", readout=first_position))
    x = t.task.sample(1, seed=0, length=3)[0]
    assert x[0] == "BOS" and x[-1] == "EOS" and len(x) == 5 and t.task.in_domain(x)
    assert t.position_offset == 0 and t.tokens([x])[0, 0].item() == IDS["BOS"]
    assert t.tokens([x])[0, -1].item() == IDS["EOS"]
    logits = t.logits([x])
    assert t.predict([x])[0] == [VOCAB[int(logits[0, 0].argmax())], None, None, None, None]
    assert t.task.content(x) == x[1:-1] and not t.task.in_domain(x[1:])


def test_sep_is_placed_by_the_generator_and_has_its_own_token_id():
    t = target(task(sep="SEP", generator=with_sep, min_len=2, readout=after_sep))
    xs = t.task.sample(30, seed=3)
    assert all(x.count("SEP") == 1 and t.task.in_domain(x) for x in xs)
    assert all(IDS["SEP"] in row for row in t.tokens([xs[0]]).tolist())
    for x, row in zip(xs, t.predict(xs)):
        assert row[: x.index("SEP") + 1] == [None] * (x.index("SEP") + 1)


def test_pad_fills_shorter_inputs_and_is_masked():
    t = target(task(pad="PAD", bos="BOS"))
    xs = [[1, 2, 0], [2]]
    assert t.tokens(xs).tolist() == [[3, 1, 2, 0], [3, 2, 6, 6]]
    assert t.attention_mask(xs).tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert t.attention_mask([[1, 2], [0, 0]]) is None  # one length: run exactly as without a mask
    with pytest.raises(TargetError, match="one length"):
        target(task()).tokens(xs)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(bos=0), "also a vocabulary value"),
        (dict(eos="X", pad="X"), "also another special"),
        (dict(bos_in_input=True), "needs a bos"),
    ],
)
def test_bad_special_tokens_are_one_line_errors(kw, message):
    with pytest.raises(TargetError, match=message):
        task(**kw)


def test_a_special_token_without_a_token_id_is_an_error():
    with pytest.raises(TargetError, match="EOS value 'END' has no token id"):
        target(task(eos="END"))


# --- padded batches -----------------------------------------------------------------------------
PADDED = task(pad="PAD", bos="BOS", eos="EOS", bos_in_input=True)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=2, max_size=8), st.integers(0, 10_000))
def test_a_padded_batch_equals_the_per_length_computation(lengths, seed):
    t = _padded_target()
    rng = random.Random(seed)
    xs = [PADDED.frame([rng.choice(VOCAB) for _ in range(n)]) for n in lengths]
    mixed = t.logits(xs)
    for b, x in enumerate(xs):
        alone = t.logits([x])[0]
        assert torch.allclose(mixed[b, : len(x)], alone, atol=1e-5)
    by_length = [t.predict([x])[0] for x in xs]
    assert t.predict(xs) == by_length


def test_without_the_key_mask_padding_would_change_a_bidirectional_network():
    t = _padded_target()
    xs = [PADDED.frame([1, 2, 0, 1, 2]), PADDED.frame([2])]
    unmasked = t.model(t.tokens(xs))
    alone = t.logits([xs[1]])[0]
    assert not torch.allclose(unmasked[1, : len(xs[1])], alone, atol=1e-3)
    assert torch.allclose(t.logits(xs)[1, : len(xs[1])], alone, atol=1e-5)


_PADDED_TARGET: list[Target] = []


def _padded_target() -> Target:
    if not _PADDED_TARGET:
        _PADDED_TARGET.append(target(PADDED, seed=4))
    return _PADDED_TARGET[0]


def test_every_input_walks_small_spaces_and_leaves_generated_or_large_ones_to_sampling():
    t = task(vocab=(0, 1, 2), min_len=1, max_len=3)
    every = t.every_input(3 + 9 + 27)
    assert every is not None and len(every) == 39 and len({tuple(x) for x in every}) == 39
    assert t.every_input(38) is None  # one candidate over the limit
    assert task(vocab=(0, 1, 2), min_len=1, max_len=3, generator=with_sep).every_input(10**6) is None
