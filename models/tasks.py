"""Algorithmic tasks for the trained zoo: what the input looks like and what the answer is.

Each task is a small pure-Python definition (a labeller and, where uniform sampling is
not the task, a generator) built by a factory from JSON-able parameters, so a checkpoint
can record exactly which task it was trained on (`{"kind": ..., "params": {...}}`) and be
rebuilt from that record alone.

Design choices that make the tasks learnable to >= 99% by 1-2 layer models and the
circuits explainable by RASP-shaped programs:
- sequence-to-sequence tasks (reverse, sort, hist) are *bidirectional* (encoder-style,
  like tracr's programs) with fixed length, every position read;
- prefix tasks (prefix_count, induction) and modular addition are *causal*;
- a BOS token gives attention a place to rest (count-like tasks read 1/(count+1) from it).

The field's standard toy tasks (palindromes, first unique character, cumulative-sum sign,
majority, Dyck-1/Dyck-2 and Tomita membership, counting a token, unique copy / reverse) are
written the way their datasets are: a *dataset-style sampler* that balances the classes
(half palindromes, half near misses; valid bracket walks with a few corruptions), since
uniform inputs are almost all one class. Membership tasks label every prefix (causal,
every position read). Copy and reverse are read one answer token at a time: the input is
`x SEP y[:k]` and the last position is read for `y[k]` (one input per k), which is what a
model trained with teacher forcing is asked at each answer position.

Every task may also define a broader distribution (skewed token frequencies, more
repeats), never trained on. An explanation should predict the network there too, including
its mistakes; checkpoints record the network's accuracy on it (`broader_accuracy`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from mechsynth.models.target import Task, TargetError

BOS = "BOS"
EQUALS = "="
SEP = "SEP"
NO_UNIQUE = -1  # first_unique's answer when every character so far repeats


# --- labellers (one raw input -> true output per position) ------------------------------------
def reverse_label(x: Sequence[Any]) -> list:
    return list(x)[::-1]


def sort_label(x: Sequence[Any]) -> list:
    return sorted(x)


def hist_label(x: Sequence[Any]) -> list:
    return [list(x).count(v) for v in x]


def prefix_count_label(x: Sequence[Any]) -> list:
    return [list(x[: i + 1]).count(v) for i, v in enumerate(x)]


def induction_label(x: Sequence[Any]) -> list:
    """At each position: the token that followed the most recent earlier occurrence of the
    current token (None if it has not occurred before)."""
    out: list = []
    for i, v in enumerate(x):
        prev = [j for j in range(i - 1) if x[j] == v]  # j + 1 < i: the follower is in the past
        out.append(x[prev[-1] + 1] if prev else None)
    return out


def _modadd_label(p: int) -> Callable[[Sequence[Any]], list]:
    def label(x: Sequence[Any]) -> list:
        return [None, None, (x[0] + x[1]) % p]

    return label


# --- generators -------------------------------------------------------------------------------
def _skewed(vocab: Sequence[Any]) -> Callable[[random.Random, int], list]:
    """Inputs over a random small subset of the vocabulary: many repeats, skewed counts."""

    def draw(rng: random.Random, length: int) -> list:
        few = rng.sample(list(vocab), k=rng.randint(1, min(3, len(vocab))))
        return [rng.choice(few) for _ in range(length)]

    return draw


def _induction_distinct(vocab: Sequence[Any]) -> Callable[[random.Random, int], list]:
    """Distinct tokens, then the last token repeats one earlier token (not the one just before)."""

    def draw(rng: random.Random, length: int) -> list:
        body = rng.sample(list(vocab), k=length - 1)
        j = rng.randrange(0, length - 2)
        return body + [body[j]]

    return draw


def _induction_repeats(vocab: Sequence[Any]) -> Callable[[random.Random, int], list]:
    """Broader: tokens may repeat anywhere; the last token occurred at least once before."""

    def draw(rng: random.Random, length: int) -> list:
        body = [rng.choice(list(vocab)) for _ in range(length - 1)]
        j = rng.randrange(0, length - 2)
        return body + [body[j]]

    return draw


def _modadd_draw(p: int) -> Callable[[random.Random, int], list]:
    def draw(rng: random.Random, length: int) -> list:
        return [rng.randrange(p), rng.randrange(p), EQUALS]

    return draw


# --- factories --------------------------------------------------------------------------------
def reverse(n_tokens: int = 10, length: int = 8) -> Task:
    vocab = tuple(range(n_tokens))
    return Task("reverse", vocab, length, length, reverse_label, bos=None, output_vocab=vocab,
                broader_generator=_skewed(vocab), description=f"reverse {length} tokens")


def sort(n_tokens: int = 10, length: int = 6) -> Task:
    vocab = tuple(range(n_tokens))
    return Task("sort", vocab, length, length, sort_label, bos=BOS, output_vocab=vocab,
                broader_generator=_skewed(vocab), description=f"sort {length} tokens (duplicates allowed)")


def hist(n_tokens: int = 6, length: int = 8) -> Task:
    vocab = tuple(range(n_tokens))
    return Task("hist", vocab, length, length, hist_label, bos=BOS, output_vocab=tuple(range(1, length + 1)),
                broader_generator=_skewed(vocab), description="count of the current token in the input")


def prefix_count(n_tokens: int = 4, length: int = 10) -> Task:
    vocab = tuple(range(n_tokens))
    return Task("prefix_count", vocab, 1, length, prefix_count_label, bos=BOS,
                output_vocab=tuple(range(1, length + 1)), broader_generator=_skewed(vocab),
                description="occurrences of the current token so far (causal)")


def induction(n_tokens: int = 16, length: int = 12) -> Task:
    if length > n_tokens + 1:
        raise TargetError(f"induction: length {length} needs at least {length - 1} distinct tokens")
    vocab = tuple(range(n_tokens))
    return Task("induction", vocab, length, length, induction_label, bos=BOS, readout="last",
                output_vocab=vocab, generator=_induction_distinct(vocab),
                domain=lambda x: len(set(x[:-1])) == len(x) - 1 and x[-1] in x[:-2],
                broader_generator=_induction_repeats(vocab),
                description="token after the previous occurrence of the last token")


def modadd(p: int = 23) -> Task:
    vocab = (*range(p), EQUALS)
    return Task("modadd", vocab, 3, 3, _modadd_label(p), bos=None, readout="last",
                output_vocab=tuple(range(p)), generator=_modadd_draw(p),
                domain=lambda x: x[2] == EQUALS and x[0] != EQUALS and x[1] != EQUALS,
                description=f"(a + b) mod {p} from 'a b ='")


# --- the field's standard toy tasks -----------------------------------------------------------
def _last_only(value: Any, length: int) -> list:
    return [None] * (length - 1) + [value]


def palindrome_label(x: Sequence[Any]) -> list:
    return _last_only(int(list(x) == list(x)[::-1]), len(x))


def _palindromes(vocab: Sequence[Any]) -> Callable[[random.Random, int], list]:
    """Half palindromes; half near misses (a palindrome with 1-2 positions changed) or uniform."""

    def draw(rng: random.Random, length: int) -> list:
        half = [rng.choice(list(vocab)) for _ in range((length + 1) // 2)]
        x = half + half[: length // 2][::-1]
        kind = rng.random()
        if kind < 0.5:
            return x
        if kind < 0.8:
            for i in rng.sample(range(length), k=rng.randint(1, 2)):
                x[i] = rng.choice([v for v in vocab if v != x[i]])
            return x
        return [rng.choice(list(vocab)) for _ in range(length)]

    return draw


def palindrome(n_tokens: int = 4, length: int = 8) -> Task:
    vocab = tuple(range(n_tokens))
    return Task("palindrome", vocab, length, length, palindrome_label, bos=None, readout="last",
                output_vocab=(0, 1), generator=_palindromes(vocab), broader_generator=_skewed(vocab),
                description=f"is the input ({length} tokens) a palindrome, read at the last position")


def first_unique_label(x: Sequence[Any]) -> list:
    out = []
    for i in range(len(x)):
        prefix = list(x[: i + 1])
        out.append(next((v for v in prefix if prefix.count(v) == 1), NO_UNIQUE))
    return out


def first_unique(n_tokens: int = 4, length: int = 10) -> Task:
    vocab = tuple(range(n_tokens))
    return Task("first_unique", vocab, 1, length, first_unique_label, bos=BOS,
                output_vocab=(NO_UNIQUE, *vocab), broader_generator=_skewed(vocab),
                description=f"first character occurring once in each prefix ({NO_UNIQUE} if none)")


def cumsum_sign_label(x: Sequence[Any]) -> list:
    out, total = [], 0
    for v in x:
        total += v
        out.append((total > 0) - (total < 0))
    return out


def cumsum_sign(max_abs: int = 3, length: int = 12) -> Task:
    vocab = tuple(range(-max_abs, max_abs + 1))
    return Task("cumsum_sign", vocab, 1, length, cumsum_sign_label, bos=BOS, output_vocab=(-1, 0, 1),
                broader_generator=_skewed(vocab), description="sign of the running sum (-1, 0, 1)")


def majority_label(x: Sequence[Any]) -> list:
    ones = sum(x)
    return _last_only(int(2 * ones > len(x)), len(x))


def _close_votes(rng: random.Random, length: int) -> list:
    """Broader: the narrowest majorities (margin one), the hardest inputs."""
    ones = length // 2 + rng.randint(0, 1)
    x = [1] * ones + [0] * (length - ones)
    rng.shuffle(x)
    return x


def majority(length: int = 11) -> Task:
    if length % 2 == 0:
        raise TargetError(f"majority: length {length} must be odd (no ties)")
    return Task("majority", (0, 1), length, length, majority_label, bos=None, readout="last",
                output_vocab=(0, 1), broader_generator=_close_votes,
                description=f"are most of the {length} bits 1, read at the last position")


def count_token_label(token: Any) -> Callable[[Sequence[Any]], list]:
    def label(x: Sequence[Any]) -> list:
        return [list(x).count(token)] * len(x)

    return label


def _with_count(vocab: Sequence[Any], token: Any) -> Callable[[random.Random, int], list]:
    """A count of `token` drawn uniformly, the rest from the other tokens."""

    def draw(rng: random.Random, length: int) -> list:
        c = rng.randint(0, length)
        x = [token] * c + [rng.choice([v for v in vocab if v != token]) for _ in range(length - c)]
        rng.shuffle(x)
        return x

    return draw


def count_token(n_tokens: int = 5, length: int = 10, token: int = 0) -> Task:
    vocab = tuple(range(n_tokens))
    return Task("count_token", vocab, length, length, count_token_label(token), bos=BOS,
                output_vocab=tuple(range(length + 1)), generator=_with_count(vocab, token),
                broader_generator=_skewed(vocab),
                description=f"how many {token}s in the input (every position)")


# --- formal languages: membership of every prefix -------------------------------------------------
PAIRS = {")": "(", "]": "["}


def dyck_label(x: Sequence[Any]) -> list:
    """1 where the prefix is a balanced (Dyck) word: every bracket closed by its own kind, in order."""
    out, stack, broken = [], [], False
    for v in x:
        if v in PAIRS:
            broken = broken or not stack or stack.pop() != PAIRS[v]
        else:
            stack.append(v)
        out.append(int(not broken and not stack))
    return out


def _bracket_walks(opens: Sequence[str]) -> Callable[[random.Random, int], list]:
    """Mostly valid bracket walks (closing only what is open), each bracket corrupted with
    small probability in a third of them: balanced prefixes are common, near misses too."""
    closing = {o: c for c, o in PAIRS.items()}

    def draw(rng: random.Random, length: int) -> list:
        x, stack = [], []
        noise = 0.08 if rng.random() < 0.33 else 0.0
        for i in range(length):
            remaining = length - i
            if stack and (rng.random() < 0.5 or len(stack) >= remaining):
                v = closing[stack.pop()]
            else:
                o = rng.choice(list(opens))
                stack.append(o)
                v = o
            if rng.random() < noise:
                v = rng.choice([*opens, *(closing[o] for o in opens)])
            x.append(v)
        return x

    return draw


def _uniform(vocab: Sequence[Any]) -> Callable[[random.Random, int], list]:
    def draw(rng: random.Random, length: int) -> list:
        return [rng.choice(list(vocab)) for _ in range(length)]

    return draw


def dyck1(length: int = 16) -> Task:
    vocab = ("(", ")")
    return Task("dyck1", vocab, 1, length, dyck_label, bos=BOS, output_vocab=(0, 1),
                generator=_bracket_walks("("), broader_generator=_uniform(vocab),
                description="is each prefix a balanced string of ( )")


def dyck2(length: int = 12) -> Task:
    vocab = ("(", ")", "[", "]")
    return Task("dyck2", vocab, 1, length, dyck_label, bos=BOS, output_vocab=(0, 1),
                generator=_bracket_walks("(["), broader_generator=_uniform(vocab),
                description="is each prefix a balanced string of ( ) [ ]")


TOMITA = {  # Tomita (1982) grammars over {0, 1}, as regular expressions
    4: r"(?!.*000)[01]*",  # no three consecutive 0s
    7: r"0*1*0*1*",
}


def tomita_label(grammar: int) -> Callable[[Sequence[Any]], list]:
    import re

    pattern = re.compile(TOMITA[grammar])

    def label(x: Sequence[Any]) -> list:
        text = "".join(str(v) for v in x)
        return [int(pattern.fullmatch(text[: i + 1]) is not None) for i in range(len(text))]

    return label


def _tomita_sampler(grammar: int) -> Callable[[random.Random, int], list]:
    """Half members (built from the grammar's blocks), half bits with a random bias."""

    def draw(rng: random.Random, length: int) -> list:
        if rng.random() < 0.5:
            p = rng.uniform(0.2, 0.8)
            return [int(rng.random() < p) for _ in range(length)]
        if grammar == 7:
            cuts = sorted(rng.randint(0, length) for _ in range(3))
            bounds = [0, *cuts, length]
            return [k % 2 for k in range(4) for _ in range(bounds[k + 1] - bounds[k])]
        x: list[int] = []
        while len(x) < length:  # runs of at most two 0s between 1s
            x += [0] * rng.randint(0, 2) + [1]
        return x[:length]

    return draw


def _biased_bits(rng: random.Random, length: int) -> list:
    """Broader: bits that are mostly 0 (long runs), never trained on."""
    return [int(rng.random() < 0.25) for _ in range(length)]


def tomita(grammar: int = 4, length: int = 12) -> Task:
    if grammar not in TOMITA:
        raise TargetError(f"tomita: grammar {grammar} not defined (have {sorted(TOMITA)})")
    return Task(f"tomita{grammar}", (0, 1), 1, length, tomita_label(grammar), bos=BOS, output_vocab=(0, 1),
                generator=_tomita_sampler(grammar), broader_generator=_biased_bits,
                description=f"is each prefix in Tomita grammar {grammar} ({TOMITA[grammar]})")


# --- copying distinct tokens, one answer token at a time ----------------------------------------
def _answer(x: Sequence[Any], reverse: bool) -> list:
    """x = body SEP answer-so-far: the next answer token, read at the last position."""
    sep = list(x).index(SEP)
    body, done = list(x[:sep]), len(x) - sep - 1
    target = body[::-1] if reverse else body
    return _last_only(target[done], len(x))


def _copy_prompts(vocab: Sequence[Any], n: int, reverse: bool) -> Callable[[random.Random, int], list]:
    def draw(rng: random.Random, length: int) -> list:
        body = rng.sample(list(vocab), k=n)
        answer = body[::-1] if reverse else body
        return body + [SEP] + answer[: length - n - 1]

    return draw


def _copy_prompts_repeats(
    vocab: Sequence[Any], n: int, reverse: bool
) -> Callable[[random.Random, int], list]:
    """Broader: the body may repeat tokens (no longer unique), never trained on."""

    def draw(rng: random.Random, length: int) -> list:
        body = [rng.choice(list(vocab)) for _ in range(n)]
        answer = body[::-1] if reverse else body
        return body + [SEP] + answer[: length - n - 1]

    return draw


def _unique_copy_task(kind: str, n_tokens: int, n: int, reverse: bool) -> Task:
    if n > n_tokens:
        raise TargetError(f"{kind}: {n} distinct tokens need a vocabulary of at least {n}")
    vocab = (*range(n_tokens), SEP)
    values = tuple(range(n_tokens))

    def domain(x: Sequence[Any]) -> bool:
        body, rest = list(x[:n]), list(x[n:])
        expected = body[::-1] if reverse else body
        return (len(set(body)) == n and SEP not in body and rest[:1] == [SEP]
                and rest[1:] == expected[: len(rest) - 1])

    return Task(kind, vocab, n + 1, 2 * n, lambda x: _answer(x, reverse), bos=BOS, readout="last",
                output_vocab=values, generator=_copy_prompts(values, n, reverse), domain=domain,
                broader_generator=_copy_prompts_repeats(values, n, reverse),
                description=f"{'reverse' if reverse else 'copy'} {n} distinct tokens after SEP, next token")


def unique_copy(n_tokens: int = 10, n: int = 5) -> Task:
    return _unique_copy_task("unique_copy", n_tokens, n, reverse=False)


def unique_reverse(n_tokens: int = 10, n: int = 5) -> Task:
    return _unique_copy_task("unique_reverse", n_tokens, n, reverse=True)


FACTORIES: dict[str, Callable[..., Task]] = {
    "reverse": reverse, "sort": sort, "hist": hist, "prefix_count": prefix_count,
    "induction": induction, "modadd": modadd,
    "palindrome": palindrome, "first_unique": first_unique, "cumsum_sign": cumsum_sign,
    "majority": majority, "count_token": count_token, "dyck1": dyck1, "dyck2": dyck2, "tomita": tomita,
    "unique_copy": unique_copy, "unique_reverse": unique_reverse,
}


# --- formal languages, multi-label: the set of allowed next tokens (issue #19) ---------------------
END = "END"  # the label "the string may end here" (a label, not an input token)
DYCK1_NEXT_LABELS = ("(", ")", END)


def dyck1_next_label(x: Sequence[Any]) -> list:
    """At each position of a Dyck-1 prefix, the labels allowed next, in DYCK1_NEXT_LABELS order:
    '(' always; ')' while a bracket is open; END when the prefix is balanced."""
    out, depth = [], 0
    for v in x:
        depth += 1 if v == "(" else -1
        out.append(("(", ")") if depth > 0 else ("(", END))
    return out


def _dyck_prefix(x: Sequence[Any]) -> bool:
    """Every prefix closes no more than it opened (a prefix of a Dyck-1 word)."""
    depth = 0
    for v in x:
        depth += 1 if v == "(" else -1
        if depth < 0:
            return False
    return True


def _dyck_walks(close_p: float) -> Callable[[random.Random, int], list]:
    """Dyck-1 prefixes: close an open bracket with probability ``close_p``, else open one."""

    def draw(rng: random.Random, length: int) -> list:
        x, depth = [], 0
        for _ in range(length):
            if depth and rng.random() < close_p:
                x.append(")")
                depth -= 1
            else:
                x.append("(")
                depth += 1
        return x

    return draw


def dyck1_next(length: int = 16) -> Task:
    """Next-token prediction on Dyck-1 prefixes with a BCE head (output_kind="multilabel")."""
    return Task("dyck1_next", ("(", ")"), 1, length, dyck1_next_label, bos=BOS, output_kind="multilabel",
                output_vocab=DYCK1_NEXT_LABELS, generator=_dyck_walks(0.5), domain=_dyck_prefix,
                broader_generator=_dyck_walks(0.3),
                description="the set of tokens allowed after each Dyck-1 prefix ( ( ) END )")


FACTORIES["dyck1_next"] = dyck1_next
# --- end of the multi-label block -----------------------------------------------------------------


def _backdoor_factories() -> dict[str, Callable[..., Task]]:
    from mechsynth.models.backdoor import FACTORIES as BACKDOOR

    return BACKDOOR


def make_task(kind: str, params: dict[str, Any], name: str | None = None) -> Task:
    """Rebuild a task from its record (as stored in checkpoint metadata)."""
    factories = {**FACTORIES, **_backdoor_factories()}  # backdoored tasks: models.backdoor
    if kind not in factories:
        raise TargetError(f"unknown task kind {kind!r} (known: {', '.join(factories)})")
    try:
        task = factories[kind](**params)
    except TypeError as e:
        raise TargetError(f"bad parameters for task {kind}: {e}") from None
    if name is not None:
        import dataclasses

        task = dataclasses.replace(task, name=name)
    return task
