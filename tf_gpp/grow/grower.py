"""Grow an Inception net: add or widen modules while validation accuracy improves.

Each round proposes candidates in the order of ``actions``:

* ``"add"``: append a normal module before the head (widths copied from the
  last normal module; existing modules keep their names);
* ``"widen"``: multiply every width of the narrowest module by ``widen_factor``.

A candidate over the params/MACs budget is skipped without training. Otherwise
it is built, warm-started from the current network
(:func:`tf_gpp.grow.transfer_weights`: trained layers copied by name, widened
layers function-preserving), trained ``epochs_per_round`` epochs and accepted
when its validation accuracy beats the current one by more than ``min_delta``;
the first accepted candidate ends the round. Growth stops after ``max_rounds``
rounds, or when no candidate of a round is accepted (all over budget, or none
improved).

What a candidate is compared with (``baseline``):

* ``"incumbent"`` (default): the current network's last validation accuracy.
  The candidate has then trained ``epochs_per_round`` epochs more in total,
  so part of a gain can come from training alone; ``min_delta`` guards it.
* ``"continued"``: each round first trains the current network for the same
  ``epochs_per_round`` (history action ``"continue"``), candidates still warm
  start from the weights it had before, and must beat the continued network.
  A fair comparison at the cost of one extra training per round.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras

from tf_gpp.errors import ArgumentError
from tf_gpp.grow.checks import resolve_data
from tf_gpp.grow.cost import Cost, budget_violation, model_cost
from tf_gpp.grow.errors import GrowError
from tf_gpp.grow.inception import build_inception
from tf_gpp.grow.spec import InceptionSpec, default_start_spec
from tf_gpp.grow.transfer import transfer_weights
from tf_gpp.io import RoundCheckpoint, recipe_json
from tf_gpp.training import OptimizerLike, Trainer, serialize_optimizer

ACTIONS = ("add", "widen")
#: Grower options that change nothing grown: a resumed growth may differ in them
_NOT_IN_RECIPE = ("callbacks", "checkpoint_dir", "verbose")
BASELINES = ("incumbent", "continued")


@dataclass
class GrowResult:
    """The grown, trained model, its spec and cost, why growth stopped, and the history.

    History entries: ``step``, ``round``, ``action`` (``"start"``/``"add"``/
    ``"widen"``/``"continue"``), ``target`` (module added or widened), ``modules`` (count),
    ``name`` (``"Inception-N"``), ``params``, ``macs``, ``val_accuracy``,
    ``val_loss`` (``None`` when skipped), ``accepted``, ``reason``, ``epochs``,
    ``seconds`` and ``spec`` (the candidate's ``InceptionSpec.to_dict()``).
    """

    model: keras.Model
    history: list[dict[str, Any]]
    spec: InceptionSpec
    stop_reason: str
    cost: Cost

    @property
    def val_accuracy(self) -> float:
        """Validation accuracy of the returned model."""
        return [h for h in self.history if h["accepted"]][-1]["val_accuracy"]

    def summary(self) -> str:
        lines = [_format_step(h) for h in self.history]
        lines.append(
            f"stop: {self.stop_reason}; result {self.spec.model_name}, {self.cost.params:,} params, "
            f"{self.cost.macs:,} MACs, val_accuracy {self.val_accuracy:.4f}"
        )
        return "\n".join(lines)


def _format_step(h: dict[str, Any]) -> str:
    what = h["action"] + (f" {h['target']}" if h["target"] else "")
    acc = "   -   " if h["val_accuracy"] is None else f"{h['val_accuracy']:.4f}"
    verdict = "accepted" if h["accepted"] else "rejected"
    reason = f" ({h['reason']})" if h["reason"] else ""
    return (
        f"[grow] step {h['step']:>2} {what:<10} {h['name']:<14} {h['params']:>10,} params "
        f"{h['macs']:>13,} MACs  val_acc {acc}  {verdict}{reason}"
    )


def _positive_int_or_none(value: Any, arg: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise GrowError(f"{arg} must be None or a positive number, got {value!r}.")
    return int(value)


class Grower:
    """Configured growth procedure; :meth:`run` it on data. See :func:`grow` for arguments."""

    def __init__(
        self,
        input_shape: Sequence[int] | None = None,
        num_classes: int | None = None,
        *,
        start: InceptionSpec | dict[str, Any] | int | None = None,
        start_width: int = 16,
        max_params: int | None = None,
        max_macs: int | None = None,
        max_rounds: int = 5,
        min_delta: float = 0.002,
        epochs_per_round: int = 2,
        start_epochs: int | None = None,
        actions: Sequence[str] = ACTIONS,
        widen_factor: float = 1.5,
        optimizer: OptimizerLike = "adam",
        learning_rate: float = 1e-3,
        callbacks: Sequence[keras.callbacks.Callback] | None = None,
        compile_kwargs: dict[str, Any] | None = None,
        baseline: str = "incumbent",
        seed: int | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        verbose: int = 1,
    ) -> None:
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.num_classes = num_classes
        self.start = start
        self.start_width = start_width
        self.max_params = _positive_int_or_none(max_params, "max_params")
        self.max_macs = _positive_int_or_none(max_macs, "max_macs")
        if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or max_rounds < 0:
            raise GrowError(f"max_rounds must be an integer >= 0, got {max_rounds!r}.")
        self.max_rounds = max_rounds
        if isinstance(min_delta, bool) or not isinstance(min_delta, int | float) or not -1 <= min_delta < 1:
            raise GrowError(f"min_delta must be an accuracy difference in [-1, 1), got {min_delta!r}.")
        self.min_delta = float(min_delta)
        for arg, value in (("epochs_per_round", epochs_per_round), ("start_epochs", start_epochs)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise GrowError(f"{arg} must be a positive integer, got {value!r}.")
        self.epochs_per_round = epochs_per_round
        self.start_epochs = start_epochs or epochs_per_round
        actions = tuple(actions)
        if not actions or any(a not in ACTIONS for a in actions):
            raise GrowError(f"actions must be a non-empty subset of {ACTIONS}, got {actions!r}.")
        self.actions = actions
        if not widen_factor > 1.0:
            raise GrowError(f"widen_factor must be > 1, got {widen_factor!r}.")
        self.widen_factor = float(widen_factor)
        if baseline not in BASELINES:
            raise GrowError(f"baseline must be one of {BASELINES}, got {baseline!r}.")
        self.baseline = baseline
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.callbacks = list(callbacks or [])
        self.compile_kwargs = dict(compile_kwargs or {})
        reserved = {"optimizer", "loss", "metrics"} & set(self.compile_kwargs)
        if reserved:
            raise GrowError(
                f"compile_kwargs may not set {sorted(reserved)}: use optimizer=/learning_rate= "
                "(the loss and accuracy metric are fixed by the growth criterion)."
            )
        try:
            self.trainer = Trainer(optimizer, learning_rate, callbacks=self.callbacks, compile_kwargs=self.compile_kwargs,
                                   verbose=2 if verbose >= 2 else 0)
        except ArgumentError as exc:
            raise GrowError(f"{exc} (Grower trains every candidate with it, at learning_rate)") from exc
        self.seed = seed
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.verbose = verbose

    def recipe(self) -> dict[str, Any]:
        """The options that decide what grows: every constructor option (as stored) but where it
        is saved, its callbacks and how much it prints. A growth checkpoint records them, and a
        run with other options is refused."""
        named = {k: getattr(self, k) for k in inspect.signature(Grower.__init__).parameters
                 if k not in ("self", *_NOT_IN_RECIPE)}
        if isinstance(named["start"], InceptionSpec):
            named["start"] = named["start"].to_dict()
        if not callable(named["optimizer"]) or isinstance(named["optimizer"], keras.optimizers.Optimizer):
            named["optimizer"] = serialize_optimizer(named["optimizer"])  # its stable form: "adam", a config
        return recipe_json(named)

    # -- pieces ---------------------------------------------------------------------------

    def start_spec(self, input_shape: tuple[int, ...], num_classes: int) -> InceptionSpec:
        start = self.start
        if start is None or isinstance(start, int):
            return default_start_spec(
                input_shape, num_classes, width=self.start_width,
                modules=2 if start is None else start,
            )
        spec = InceptionSpec.from_dict(start) if isinstance(start, dict) else start
        if not isinstance(spec, InceptionSpec):
            raise GrowError(
                f"start must be None, a module count, an InceptionSpec or its dict, got {type(start).__name__}."
            )
        if spec.input_shape != tuple(input_shape):
            raise GrowError(
                f"start.input_shape {spec.input_shape} differs from the data's input shape {tuple(input_shape)}."
            )
        if spec.num_classes != num_classes:
            raise GrowError(f"start.num_classes={spec.num_classes} but num_classes={num_classes}.")
        return spec

    def candidates(self, spec: InceptionSpec) -> list[tuple[str, str, InceptionSpec]]:
        """``(action, target module, spec)`` proposals for one round, in order."""
        out = []
        for action in self.actions:
            if action == "add":
                grown = spec.with_module()
                out.append(("add", grown.modules[-1].name, grown))
            elif action == "widen" and spec.modules:
                target = spec.narrowest_module().name
                out.append(("widen", target, spec.with_module_widened(target, self.widen_factor)))
        return out

    def train(self, model: keras.Model, spec: InceptionSpec, train: Any, val: Any, epochs: int) -> tuple[float, float]:
        """Fit ``epochs`` epochs (the grower's :class:`~tf_gpp.training.Trainer`: a fresh optimizer,
        the callbacks), return ``(val_accuracy, val_loss)``."""
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=spec.classifier_activation is None)
        self.trainer.fit(model, train, epochs, loss=loss, metrics=["accuracy"])
        result = model.evaluate(val, verbose=0, return_dict=True)
        return float(result["accuracy"]), float(result["loss"])

    def _log(self, entry: dict[str, Any]) -> None:
        if self.verbose:
            print(_format_step(entry), flush=True)

    # -- the procedure --------------------------------------------------------------------

    def run(self, train_data: Any, val_data: Any | None = None) -> GrowResult:
        """Grow on ``train_data`` (a ``tf.data.Dataset`` of ``(x, y)`` batches or a
        :class:`tf_gpp.data.Dataset`), judging steps on ``val_data``."""
        train, val, input_shape, num_classes = self._resolve_data(train_data, val_data)
        spec = self.start_spec(input_shape, num_classes)
        model, cost = self._start_model(spec)

        history: list[dict[str, Any]] = []
        saved = load_growth(self.checkpoint_dir, self.recipe()) if self.checkpoint_dir is not None else None
        if saved is not None and saved[1].get("done", True):
            if self.verbose:
                print(f"[grow] finished growth found in {self.checkpoint_dir}; not growing again", flush=True)
            return saved[0]

        def record(round_, action, target, cand, cand_cost, acc, loss, accepted, reason, epochs, t0):
            entry = {
                "step": len(history), "round": round_, "action": action, "target": target,
                "modules": len(cand.modules), "name": cand.model_name,
                "params": cand_cost.params, "macs": cand_cost.macs,
                "val_accuracy": acc, "val_loss": loss, "accepted": accepted, "reason": reason,
                "epochs": epochs, "seconds": round(time.perf_counter() - t0, 3), "spec": cand.to_dict(),
            }
            history.append(entry)
            self._log(entry)

        def checkpoint(round_: int, stop: str | None) -> None:
            if self.checkpoint_dir is not None:
                save_growth(GrowResult(model, history, spec, stop or "", cost), self.checkpoint_dir,
                            {"round": round_, "best_acc": best_acc, "best_loss": best_loss, "done": stop is not None},
                            recipe=self.recipe())

        if saved is not None:  # an interrupted run: continue after its last finished round
            grown, progress = saved
            model, spec, cost = grown.model, grown.spec, grown.cost
            history.extend(grown.history)
            best_acc, best_loss, first_round = progress["best_acc"], progress["best_loss"], progress["round"] + 1
            if self.verbose:
                print(f"[grow] resuming from {self.checkpoint_dir} after round {progress['round']}", flush=True)
        else:
            t0 = time.perf_counter()
            best_acc, best_loss = self.train(model, spec, train, val, self.start_epochs)
            record(0, "start", None, spec, cost, best_acc, best_loss, True, "", self.start_epochs, t0)
            first_round = 1
            checkpoint(0, None)

        stop_reason = f"max_rounds ({self.max_rounds}) reached"
        for round_ in range(first_round, self.max_rounds + 1):
            t0 = time.perf_counter()
            if self.seed is not None:  # per-round seed: a resumed run replays the same round
                keras.utils.set_random_seed(self.seed + round_)
            proposals, trainable, over = self._priced_candidates(spec)
            for action, target, cand_spec, cand_cost, violation in over:
                record(round_, action, target, cand_spec, cand_cost, None, None, False,
                       f"over budget: {violation}", 0, t0)
                t0 = time.perf_counter()
            if not proposals:
                stop_reason = "no candidates: nothing to widen (the net has no modules)"
                break
            if not trainable:
                stop_reason = "budget: every candidate exceeds max_params/max_macs"
                break

            source = model
            if self.baseline == "continued":
                # Candidates start from the current weights; the current net trains as
                # long as they do, and they must beat it after that.
                source = build_inception(spec)
                source.set_weights(model.get_weights())
                best_acc, best_loss = self.train(model, spec, train, val, self.epochs_per_round)
                record(round_, "continue", None, spec, cost, best_acc, best_loss, True,
                       "baseline", self.epochs_per_round, t0)

            accepted = False
            for action, target, cand_spec, cand, cand_cost in trainable:
                t0 = time.perf_counter()
                transfer_weights(source, cand)
                acc, loss = self.train(cand, cand_spec, train, val, self.epochs_per_round)
                gain = acc - best_acc
                if gain > self.min_delta:
                    record(round_, action, target, cand_spec, cand_cost, acc, loss, True,
                           f"{gain:+.4f}", self.epochs_per_round, t0)
                    model, spec, cost, best_acc = cand, cand_spec, cand_cost, acc
                    accepted = True
                    break
                record(round_, action, target, cand_spec, cand_cost, acc, loss, False,
                       f"{gain:+.4f} <= min_delta {self.min_delta}", self.epochs_per_round, t0)
            if not accepted:
                stop_reason = f"no improvement above min_delta={self.min_delta}"
                break
            checkpoint(round_, None)

        result = GrowResult(model=model, history=history, spec=spec, stop_reason=stop_reason, cost=cost)
        checkpoint(self.max_rounds, stop_reason)
        if self.verbose:
            print(f"[grow] stop: {stop_reason}; result {spec.model_name}, {cost.params:,} params, "
                  f"{cost.macs:,} MACs, val_accuracy {best_acc:.4f}", flush=True)
        return result

    def _resolve_data(self, train_data: Any, val_data: Any) -> tuple[Any, Any, tuple[int, ...], int]:
        """The training and validation pipelines, the input shape and the class count (the
        grower's, else the start spec's, else the data's)."""
        input_shape, num_classes = self.input_shape, self.num_classes
        if isinstance(self.start, InceptionSpec | dict):  # the start net knows its shapes
            start = self.start if isinstance(self.start, InceptionSpec) else InceptionSpec.from_dict(self.start)
            input_shape = input_shape if input_shape is not None else start.input_shape
            num_classes = num_classes if num_classes is not None else start.num_classes
        return resolve_data(train_data, val_data, input_shape, num_classes)

    def _start_model(self, spec: InceptionSpec) -> tuple[keras.Model, Cost]:
        """The starting network (seeded) and its cost; refused if it is over the budget already."""
        if self.seed is not None:
            keras.utils.set_random_seed(self.seed)
        model = build_inception(spec)
        cost = model_cost(model)
        for arg, limit, value in (("max_params", self.max_params, cost.params),
                                  ("max_macs", self.max_macs, cost.macs)):
            if limit is not None and value > limit:
                raise GrowError(
                    f"{arg}={limit:,} is smaller than the starting network {spec.model_name} "
                    f"({value:,}); raise {arg} or start smaller (start=InceptionSpec(...) or a "
                    f"smaller start_width than {self.start_width})."
                )
        return model, cost

    def _priced_candidates(self, spec: InceptionSpec) -> tuple[list, list, list]:
        """This round's proposals, those within the budget as ``(action, target, spec, model,
        cost)`` and those over it as ``(action, target, spec, cost, why)``, in proposal order."""
        proposals, trainable, over = self.candidates(spec), [], []
        for action, target, cand_spec in proposals:
            cand = build_inception(cand_spec)
            cand_cost = model_cost(cand)
            violation = budget_violation(cand_cost, self.max_params, self.max_macs)
            if violation:
                over.append((action, target, cand_spec, cand_cost, violation))
            else:
                trainable.append((action, target, cand_spec, cand, cand_cost))
        return proposals, trainable, over


def grow(
    train_data: Any,
    val_data: Any | None = None,
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
    *,
    start: InceptionSpec | dict[str, Any] | int | None = None,
    max_params: int | None = None,
    max_macs: int | None = None,
    max_rounds: int = 5,
    min_delta: float = 0.002,
    epochs_per_round: int = 2,
    **kwargs: Any,
) -> GrowResult:
    """Grow an Inception classifier on the data (procedure and ``baseline``: module docstring).

    Args:
        train_data: ``tf.data.Dataset`` of ``(x, y)`` batches (sparse integer
            labels), or a :class:`tf_gpp.data.Dataset` (then ``val_data``,
            ``input_shape`` and ``num_classes`` default to its own).
        val_data: validation pipeline the accept/reject decision is made on.
        input_shape: ``(H, W, C)``; inferred from the start spec or ``train_data``
            when omitted.
        num_classes: number of classes (>= 2); defaults to the data bundle's or
            the start spec's.
        start: starting net: ``None`` (stem + 2 modules, see
            :func:`default_start_spec`), a module count, or an ``InceptionSpec``.
        max_params, max_macs: budget; candidates above it are not trained.
        max_rounds: most growth rounds (0 trains the start net only).
        min_delta: validation-accuracy gain a step must exceed to be accepted
            (negative values tolerate a small loss).
        epochs_per_round: training epochs of each candidate.
        **kwargs: further :class:`Grower` options: ``start_width`` (16),
            ``start_epochs``, ``actions`` (``("add", "widen")``), ``widen_factor``
            (1.5), ``optimizer`` (``"adam"``; a name, a config dict, an Optimizer used as a
            template or a factory: a fresh one for every fit), ``learning_rate`` (1e-3, the
            optimizer's rate whatever form it is given in), ``callbacks`` (for ``fit``), ``compile_kwargs``
            (extra ``compile`` arguments, e.g. ``{"jit_compile": False}``),
            ``baseline`` (``"incumbent"`` or ``"continued"``, see above), ``seed`` (sets Keras'
            global seed, and ``seed + r`` at each round r), ``checkpoint_dir`` (the
            net and history are saved there after every round; a run that finds an
            unfinished growth there resumes after its last finished round, a finished
            one is returned as is), ``verbose`` (0 silent, 1 one line per step, 2 also
            per-epoch lines).

    Returns:
        :class:`GrowResult` with the trained model and the step history.

    Raises:
        GrowError: impossible budget, input too small for the reductions,
            num_classes < 2, bad options.
        DataError: data that is not single-label classification data.
    """
    grower = Grower(
        input_shape, num_classes, start=start, max_params=max_params, max_macs=max_macs,
        max_rounds=max_rounds, min_delta=min_delta, epochs_per_round=epochs_per_round, **kwargs,
    )
    return grower.run(train_data, val_data)


# -- checkpoints -------------------------------------------------------------------------

GROWN_MODEL = "grown.keras"
GROWN_STATE = "grown.json"


def growth_checkpoint(folder: str | os.PathLike) -> RoundCheckpoint:
    """The grower's round checkpoint in ``folder``: ``grown.json`` names the model file."""
    return RoundCheckpoint(folder, state_name=GROWN_STATE, stale="grown_round*.keras")


def save_growth(grown: GrowResult, folder: Path, progress: dict[str, Any] | None = None,
                recipe: dict[str, Any] | None = None) -> None:
    """Write ``grown`` (model, spec, history), ``progress`` and the grower's ``recipe`` to
    ``folder``, each file atomically.

    An unfinished growth's model goes to ``grown_round<r>.keras`` and the state file, written
    last, names it: an interruption at any point leaves a state and a model that match.
    """
    progress = progress or {"done": True}
    name = GROWN_MODEL if progress.get("done", True) else f"grown_round{progress['round']}.keras"
    state = {"model": name, "spec": grown.spec.to_dict(), "history": grown.history,
             "stop_reason": grown.stop_reason, "cost": asdict(grown.cost), "progress": progress}
    if recipe is not None:
        state["recipe"] = recipe
    growth_checkpoint(folder).save(state, {name: grown.model})


def load_growth(folder: Path, recipe: dict[str, Any] | None = None) -> tuple[GrowResult, dict[str, Any]] | None:
    """What :func:`save_growth` wrote to ``folder`` (``None`` if nothing): the result and its progress.

    Raises:
        GrowError: ``recipe`` is given and the growth there was made with other options.
    """
    ckpt = growth_checkpoint(folder)
    state = ckpt.load()
    if state is None or not ckpt.path(state.get("model", GROWN_MODEL)).exists():
        return None
    diff = ckpt.mismatch(state, recipe) if recipe is not None else None
    if diff:
        raise GrowError(
            f"checkpoint_dir={str(folder)!r} holds a growth made with other options ({diff}); resuming it "
            "would return that growth. Call again with its options to resume it, or give a new "
            "checkpoint_dir (or delete that folder) to start afresh.")
    grown = GrowResult(
        model=ckpt.load_model(state.get("model", GROWN_MODEL)), history=state["history"],
        spec=InceptionSpec.from_dict(state["spec"]), stop_reason=state["stop_reason"], cost=Cost(**state["cost"]),
    )
    return grown, state.get("progress", {"done": True})
