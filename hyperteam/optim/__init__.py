"""Textual backpropagation for layered teams (ANN, arXiv 2506.09046), in PyTorch's terms.

Example:
    >>> import hyperteam as ht
    >>> team = ht.load_team("ann-gsm8k")
    >>> loss_fn = ht.optim.EvaluatorLoss(model="sim:0.7")
    >>> optimizer = ht.optim.TextualGradientDescent(team, model="sim:0.7")
    >>> # loss = await loss_fn(team, examples); await loss.backward(); await optimizer.step()

Choices the paper leaves open, and what hyperteam does:

* Loss: exact match of the final answer; the evaluator model writes feedback
  only for wrong answers (right ones get "correct" without a call).
* Global gradient: one call per minibatch over all its wrong runs (a batch
  gradient), not one per example averaged afterwards.
* Evaluator: sees the problem, the gold and final answers, each layer's
  answers, and the end of each layer's output and of the final reasoning
  (300 and 600 characters: the error and the answer sit at the end).
* Local gradients: one call per layer, last layer first, from the layer's
  slice of the traces (agent answers, the last 400 characters of each output,
  the aggregator's choice and reason; 3,000 characters at most), the global
  gradient and the gradient of the layer after it. Every parameter of a
  layer receives that layer's gradient; there are no per-agent gradients.
* Bound: every gradient is at most ``max_chars`` (800) characters; a longer
  one is summarised by one more call and then clipped, so prompts do not grow
  with the number of steps.
* Momentum: the last ``momentum`` (3) updates of each layer, each with its
  gradient, the patch it led to, its outcome (kept, reverted, malformed) and
  the validation change, are shown to the updater as text; nothing is averaged.
* Update: a JSON patch of one to five operations per layer: within the
  layer (roles, instructions, aggregator, agents, candidates) or on the
  structure (add a layer after it, remove it, move it); ``ops`` restricts
  them (``("set_role", "set_instructions")``: prompts only). Replies are read
  leniently (fenced JSON, JSON in prose, common slips repaired with a note,
  unknown keys ignored) and asked for once more with the error quoted when
  still unusable. ``structured="auto"`` probes each updater model once with
  the patch schema and keeps it where honoured. New agents inherit the model and
  sampling settings of the layer's first agent; at most 7 agents per layer;
  ``adaptive`` and ``confidence_vote`` are not offered (they need state or
  logprobs a patch cannot give). Adding a candidate aggregator turns the
  layer's LLM router on. All layers' valid patches of a step are applied and
  judged together.
* Acceptance: strictly more right answers than the current team on a
  validation minibatch (``val_batch`` problems, sampled per step from the
  seed), then a strictly higher score on the whole validation set; ties are
  reverted. The current team's per-problem validation results are reused,
  not recomputed: exact for deterministic models, optimistic noise control
  at temperature > 0.
* A minibatch with no wrong answer has no gradient: the step is skipped.
  A problem whose run failed counts as wrong and is reported by kind, never
  as right; when more than half of a minibatch (or of the validation set)
  failed, training stops with a ``ModelError``. A failed optimizer call ends
  its step unchanged.
* Test: with ``test`` problems, the untrained and the trained team are scored
  on them after training (``report["test"]``: both accuracies, the paired
  change with its 95% interval, the exact McNemar p-value, the
  validation-minus-test gap): the only numbers nothing was selected on.
* All optimizer, router and critic calls use temperature 0.
* Forward routing: before a layer's agents run, the team's default model
  picks among ``[fusion, *candidates]`` from the task and the layer input;
  an unreadable pick falls back to ``fusion``.
* Refinement: the critic ends with ``Verdict: OK`` or ``Verdict: FIX``;
  only ``FIX`` leads to a revision, and a revision without an answer keeps
  the previous solution.
* Pool: an accepted step adds the layers it changed, with the validation
  score they reached; ``assemble`` takes the best variant of each layer.
* Data: ``hyperteam train`` validates on the ``--val`` problems that follow
  the ``--train`` ones in the suite's train split, and tests on the first
  ``--test`` (200) of its test split.
* Budget: checked between steps, so a run may pass it by one step's tokens.
"""

from hyperteam.optim.cost import CostEstimate, estimate
from hyperteam.optim.loss import EvaluatorLoss, Example, Gradients, Loss
from hyperteam.optim.optimizer import PatchRecord, TextualGradientDescent
from hyperteam.optim.patch import Patch, apply_patch, parse_patch
from hyperteam.optim.pool import LayerPool, Variant, assemble
from hyperteam.optim.report import write_report
from hyperteam.optim.trainer import Trainer
from hyperteam.topologies.parameters import Parameter, named_parameters
from hyperteam.topologies.refine import refine_output

__all__ = [
    "CostEstimate",
    "EvaluatorLoss",
    "Example",
    "Gradients",
    "LayerPool",
    "Loss",
    "Parameter",
    "Patch",
    "PatchRecord",
    "TextualGradientDescent",
    "Trainer",
    "Variant",
    "apply_patch",
    "assemble",
    "estimate",
    "named_parameters",
    "parse_patch",
    "refine_output",
    "write_report",
]
