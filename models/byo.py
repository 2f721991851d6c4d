"""Bring your own target: a user's network and task, as `file:<path.py>`.

A target file is an ordinary Python module that defines `target() -> models.Target`.
`load_target("file:my_target.py")` imports it (as a module, from its path) and calls
`target()`. Helpers build the `Target` from what users usually have:

- `from_state_dict(name, task, config, state_dict)`: a TransformerLens-layout state dict
  (e.g. `HookedTransformer.state_dict()`, or a bridge's own) plus its config fields
  (n_layers, d_model, ...; see models.bridge.CONFIG_FIELDS);
- `from_transformer_lens(path, task, config=None)`: a TransformerLens state dict saved to a
  `.pt`/`.pth` (read with `weights_only=True`, `map_location="cpu"`) or `.safetensors` file,
  its config given or inferred from the weight shapes (`target.info["config_source"]` says
  which fields were inferred and which assumed; see models.outside);
- `from_checkpoint(path)`: a mechsynth checkpoint (models.checkpoint) anywhere on disk;
- `from_hub(model_name_or_path, task)`: a HuggingFace model via
  `TransformerBridge.boot_transformers` (a hub name where the hub is reachable, or a local
  directory written by `save_pretrained`, read offline); `config=` for a directory whose
  weights came without `config.json`. Task values are token ids by default.

Example target file::

    from mechsynth.models import Task, byo

    def target():
        task = Task("copy", vocab=tuple(range(20)), min_len=1, max_len=8,
                    labeller=lambda x: list(x), output_vocab=tuple(range(20)))
        return byo.from_hub("/models/tiny-gpt2", task)
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mechsynth.models.target import OUTPUT_KINDS, Target, TargetError, Task

# Architecture names whose head is a plain softmax language-model head over the vocabulary.
SOFTMAX_LM_HEADS = ("LMHeadModel", "ForCausalLM", "ForMaskedLM")


class HeadWarning(UserWarning):
    """A hub model whose head may not be read as a softmax over tokens (see `from_hub`)."""


def _architectures(local: Path, config: Any) -> list[str]:
    """The head classes a Hugging Face config names (``architectures``), [] when it names none."""
    import json

    if config is not None:
        names = config.get("architectures") if isinstance(config, Mapping) else getattr(
            config, "architectures", None)
    elif (local / "config.json").is_file():
        try:
            names = json.loads((local / "config.json").read_text()).get("architectures")
        except (OSError, ValueError):
            names = None
    else:
        names = None
    return [str(n) for n in names or []]


def _readout_kind(source: str, task: Task, heads: list[str], output_kind: str | None) -> Task:
    """The task with the readout the caller chose; a HeadWarning when the head is not a softmax LM
    head and no readout was chosen (the network would be decoded by argmax as if it were one)."""
    import dataclasses
    import warnings

    odd = [h for h in heads if not h.endswith(SOFTMAX_LM_HEADS)]
    if output_kind is None:
        if odd:
            warnings.warn(f"{source}: config names {odd[0]}, whose head is not a plain softmax LM head; "
                          f"decoding it as {task.output_kind!r} (pass output_kind=, e.g. 'multilabel' "
                          "for a binary cross-entropy head)", HeadWarning, stacklevel=3)
        return task
    if output_kind not in OUTPUT_KINDS:
        raise TargetError(f"from_hub: output_kind must be one of {', '.join(OUTPUT_KINDS)}, "
                          f"got {output_kind!r}")
    return dataclasses.replace(task, output_kind=output_kind)


def default_input_ids(task: Task) -> dict[Any, int]:
    """Vocabulary values in order get ids 0..V-1; the BOS value (if any) gets id V."""
    ids = {v: i for i, v in enumerate(task.vocab)}
    if task.bos is not None:
        ids[task.bos] = len(ids)
    return ids


def from_state_dict(
    name: str, task: Task, config: Mapping[str, Any], state_dict: Mapping[str, Any], *,
    input_ids: Mapping[Any, int] | None = None, output_values: tuple | None = None,
) -> Target:
    """A target from TransformerLens weights and config (strictly checked against each other)."""
    from mechsynth.models.bridge import build_bridge

    model = build_bridge(config, state_dict)
    values = tuple(output_values) if output_values is not None else tuple(task.output_vocab)
    return Target(name=name, model=model, task=task, input_ids=input_ids or default_input_ids(task),
                  output_values=values, info={"kind": "file", "config": dict(config)})


def from_transformer_lens(
    path: str | Path, task: Task, config: Mapping[str, Any] | None = None, *, name: str | None = None,
    input_ids: Mapping[Any, int] | None = None, output_values: tuple | None = None,
) -> Target:
    """A target from a TransformerLens state dict file (`HookedTransformer.state_dict()` saved by
    torch.save or safetensors); config fields not given are read off the weight shapes."""
    from mechsynth.models import outside
    from mechsynth.models.bridge import build_bridge

    source = str(Path(path).expanduser())
    state = outside.read_state_dict(source)
    inferred = outside.infer_config(state, config, source=source)
    weights = outside.check_transformer_lens_weights(state, inferred.config, source=source)
    try:
        model = build_bridge(inferred.config, weights)
    except TargetError as e:
        raise TargetError(f"{source}: {e}") from None
    values = tuple(output_values) if output_values is not None else tuple(task.output_vocab)
    return Target(name=name or f"file:{Path(source).name}", model=model, task=task,
                  input_ids=input_ids or default_input_ids(task), output_values=values,
                  info={"kind": "file", "config": inferred.config, "source": source,
                        "config_source": inferred.describe()})


def from_checkpoint(path: str | Path, name: str | None = None) -> Target:
    """A target from a mechsynth checkpoint (`<stem>.json` + `<stem>.safetensors`)."""
    from mechsynth.models import checkpoint

    return checkpoint.load(path, name=name, kind="file")


def from_hub(
    model_name_or_path: str, task: Task, *, name: str | None = None, config: Any = None,
    input_ids: Mapping[Any, int] | None = None, output_values: tuple | None = None,
    output_kind: str | None = None, **boot_kwargs: Any,
) -> Target:
    """A target from a HuggingFace model through `TransformerBridge.boot_transformers`.

    The readout is the caller's to state: ``output_kind`` ("categorical", "numerical",
    "multilabel") replaces the task's. When the config's ``architectures`` names a head that
    is not a plain softmax LM head (``*LMHeadModel``, ``*ForCausalLM``, ``*ForMaskedLM``;
    e.g. a BCE next-token head of a formal-language network) and no ``output_kind`` is
    given, a one-line `HeadWarning` says so: the logits are then decoded as the task says
    (argmax by default), which is wrong for a multi-label head.

    A local directory (`save_pretrained`) is read from disk only. `config` (a transformers
    config, or a dict with `model_type`) is for weights saved without their `config.json`:
    the model is built from it and the weights loaded strictly (models.outside.hf_model).
    By default task vocabulary values are the model's token ids and logit column j decodes
    to j (so `task.output_vocab` should be token ids too).
    """
    from transformer_lens.model_bridge import TransformerBridge

    boot_kwargs.setdefault("device", "cpu")
    local = Path(model_name_or_path).expanduser()
    task = _readout_kind(model_name_or_path, task, _architectures(local, config), output_kind)
    if config is None and local.is_dir() and not (local / "config.json").is_file():
        raise TargetError(f"{local} has no config.json: pass config= (a transformers config, or a dict "
                          "with model_type, e.g. {'model_type': 'gpt2', 'n_layer': 2, ...})")
    with tempfile.TemporaryDirectory() as config_dir:
        boot_from = model_name_or_path
        if config is not None:
            from mechsynth.models import outside

            boot_kwargs["hf_model"] = outside.hf_model(local, config)
            # boot_transformers still resolves a tokenizer from a path: give it the config alone
            # (the target feeds token ids, so an empty tokenizer of the right family is enough).
            boot_kwargs["hf_model"].config.to_json_file(str(Path(config_dir) / "config.json"))
            boot_from = config_dir
        try:
            model = TransformerBridge.boot_transformers(boot_from, **boot_kwargs)
        except (OSError, ValueError) as e:
            first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise TargetError(f"boot_transformers cannot load {model_name_or_path!r}: {first_line}") from None
    model.eval()
    if input_ids is None:
        values = list(task.vocab) + ([] if task.bos is None else [task.bos])
        try:
            input_ids = {v: int(v) for v in values}
        except (TypeError, ValueError):
            raise TargetError("from_hub: task values must be token ids, or pass input_ids=") from None
    values = tuple(output_values) if output_values is not None else tuple(range(model.cfg.d_vocab_out))
    info = {"kind": "file", "source": model_name_or_path,
            "config_source": "given (config=)" if config is not None else f"{model_name_or_path}/config.json"}
    return Target(name=name or f"hub:{model_name_or_path}", model=model, task=task, input_ids=input_ids,
                  output_values=values, info=info)


def load_file_target(path: str) -> Target:
    """`file:<path.py>`: import the module at `path` and call its `target()`."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise TargetError(f"target file {file} does not exist")
    if file.suffix != ".py":
        raise TargetError(f"target file {file} is not a .py module")
    module_name = f"mechsynth_target_{abs(hash(str(file.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise TargetError(f"cannot import target file {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except TargetError:
        raise
    except SystemExit as e:  # sys.exit() in a target file would end mechsynth silently, exit code and all
        raise TargetError(f"target file {file} called sys.exit({e.code!r}) while being imported") from None
    except Exception as e:  # any error in user code becomes one line naming the file
        del sys.modules[module_name]
        raise TargetError(f"importing {file} failed: {type(e).__name__}: {e}") from None
    make = getattr(module, "target", None)
    if not callable(make):
        raise TargetError(f"target file {file} defines no function target() -> models.Target")
    try:
        result = make()
    except TargetError:
        raise
    except SystemExit as e:
        raise TargetError(f"{file}: target() called sys.exit({e.code!r})") from None
    except Exception as e:
        raise TargetError(f"{file}: target() failed: {type(e).__name__}: {e}") from None
    if not isinstance(result, Target):
        raise TargetError(f"{file}: target() returned {type(result).__name__}, not a models.Target")
    return result
