"""The trainer: minibatches, backward, step, and a patch kept only when validation improves.

One step: run the team on a minibatch of training problems; the loss and
``backward()`` give per-layer gradients; the optimizer applies patches; the
patched team must beat the current one on a validation minibatch (strictly
more right), then on the full validation set (strictly higher score), or it
is reverted. The current team's per-problem validation results are kept, so
only the patched team is run. Accepted layers join the layer pool.

Honest reports: validation selected the patches, so it cannot say whether
training helped. With ``test`` problems (held out of both), the untrained
and the trained team are scored on them after training, and the report
gives both, their tokens per problem, the validation-minus-test gap and the
exact McNemar p-value of the paired difference. With ``baseline=
"self-consistency"`` it also scores self-consistency with as many samples as
match the trained team's test tokens (see :mod:`hyperteam.evals.baseline`),
paired against the trained team: a trained team that is not better than that
has learned to spend tokens, not to solve problems.

Loud failures: a problem whose run failed counts as wrong, and each step says
how many failed and why (by kind); when more than ``max_failed`` of a
minibatch (or of the validation set) failed, training stops with an error
instead of learning from an endpoint's timeouts.

After every step the whole state (team, optimizer momentum, position,
validation results, pool, history, tokens) is written atomically to the
checkpoint, so a killed run started again resumes after its last finished
step. With ``budget_tokens``, training stops cleanly before a step once the
tokens spent (team and optimizer) reach the budget.

Example:
    >>> trainer = Trainer(team, train=train, val=val, model="sim:0.7", epochs=2, batch=8,
    ...                   checkpoint="trained.ckpt.json")      # doctest: +SKIP
    >>> report = await trainer.fit()                          # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from hyperteam.errors import ConfigError, HyperteamError, ModelError
from hyperteam.evals.datasets import Problem
from hyperteam.evals.stats import compare_paired
from hyperteam.models.runtime import Runtime
from hyperteam.models.types import ChatModel, Usage
from hyperteam.optim._failures import Failures, failure_kind
from hyperteam.optim.loss import EvaluatorLoss, Example
from hyperteam.optim.optimizer import TextualGradientDescent, restore, snapshot
from hyperteam.optim.patch import OP_NAMES
from hyperteam.optim.pool import LayerPool
from hyperteam.topologies.io import team_from_dict, team_to_dict
from hyperteam.topologies.layered import LayeredTeam
from hyperteam.topologies.result import TeamResult

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1


class Trainer:
    """Trains a layered team's roles, instructions and aggregators by textual backprop.

    Args:
        team: the team to train (updated in place; ``trainer.team`` after a resume).
        train: training problems.
        val: validation problems, disjoint from ``train``.
        test: held-out test problems, disjoint from both; the untrained and the trained
            team are scored on them after training (``report["test"]``). Empty: no test.
        model: the team's model for agents that name none.
        optimizer_model: evaluator, gradient and updater model; default: ``model``.
        epochs: passes over ``train``.
        batch: training problems per step.
        val_batch: validation problems in the first acceptance check; default: ``batch``.
        budget_tokens: stop before a step once this many tokens are spent.
        checkpoint: a JSON file written after every step, and resumed from when present.
        concurrency: problems in flight.
        seed: shuffling and validation-minibatch sampling.
        max_gradient_chars: the bound on each textual gradient.
        momentum: past gradients per layer shown to the updater.
        structured: ``"auto"`` (default) probes each updater model once with the patch schema and
            keeps it where honoured; ``"json_schema"`` always constrains the updater's output to the
            patch schema (vLLM ``structured_outputs``, OpenAI ``response_format``); ``"json_object"``
            asks for any JSON; None: plain text with ``<patch>`` delimiters.
        ops: the patch operations the updater may use (default all; ``("set_role",
            "set_instructions")`` learns prompts only).
        max_failed: training stops with a ``ModelError`` when more than this share of a
            minibatch's (or the validation set's) problems failed.
        runtime: clients and cache; default: a new runtime with ``max_concurrency=concurrency``.
        log: called with one line per step (the CLI prints them).
        baseline: ``"self-consistency"``: also score it on the test problems at the trained team's
            tokens per problem (``report["test"]["self_consistency"]``); needs ``test``.

    Example:
        >>> import hyperteam as ht
        >>> trainer = ht.optim.Trainer(ht.load_team("ann-gsm8k"), train=train, val=val,
        ...                            model="sim:0.7")  # doctest: +SKIP
    """

    def __init__(
        self,
        team: LayeredTeam,
        *,
        train: Sequence[Problem],
        val: Sequence[Problem],
        test: Sequence[Problem] = (),
        model: str | ChatModel | None = None,
        optimizer_model: str | ChatModel | None = None,
        epochs: int = 2,
        batch: int = 8,
        val_batch: int | None = None,
        budget_tokens: int | None = None,
        checkpoint: str | Path | None = None,
        concurrency: int = 32,
        seed: int = 0,
        max_gradient_chars: int = 800,
        momentum: int = 3,
        structured: Literal["auto", "json_schema", "json_object"] | None = "auto",
        max_failed: float = 0.5,
        ops: Sequence[str] = OP_NAMES,
        runtime: Runtime | None = None,
        log: Callable[[str], None] | None = None,
        baseline: Literal["self-consistency"] | None = None,
    ) -> None:
        for label, value in (("epochs", epochs), ("batch", batch), ("concurrency", concurrency)):
            if value < 1:
                raise ConfigError(f"{label} must be >= 1, got {value}")
        if not train or not val:
            raise ConfigError("training needs at least one training and one validation problem")
        if {p.id for p in train} & {p.id for p in val}:
            raise ConfigError("validation problems must be held out of the training problems")
        if {p.id for p in test} & ({p.id for p in train} | {p.id for p in val}):
            raise ConfigError("test problems must be held out of the training and validation problems")
        if not 0.0 <= max_failed <= 1.0:
            raise ConfigError(f"max_failed must be between 0 and 1, got {max_failed}")
        if budget_tokens is not None and budget_tokens < 1:
            raise ConfigError(f"budget_tokens must be >= 1, got {budget_tokens}")
        if not isinstance(team, LayeredTeam):
            raise ConfigError(f"textual backprop trains layered teams; {team.name!r} is a {type(team).__name__}")
        if baseline not in (None, "self-consistency"):
            raise ConfigError(f"unknown baseline {baseline!r}; known: self-consistency")
        if baseline and not test:
            raise ConfigError("a baseline is scored on the held-out test problems: give some (--test N)")
        self.baseline = baseline
        self.team = team
        self.train, self.val, self.test = list(train), list(val), list(test)
        self.max_failed = max_failed
        self.failures = Failures()
        self.test_report: dict[str, Any] | None = None
        self.model = model
        self.optimizer_model = optimizer_model if optimizer_model is not None else model
        self.epochs, self.batch = epochs, batch
        self.val_batch = min(val_batch or batch, len(self.val))
        self.budget_tokens = budget_tokens
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.concurrency = concurrency
        self.seed = seed
        self.runtime = runtime
        self._log = log or log_line
        self.loss_fn = EvaluatorLoss(self.optimizer_model, max_chars=max_gradient_chars)
        self.optimizer = TextualGradientDescent(
            team, model=self.optimizer_model, momentum=momentum, structured=structured, ops=ops
        )
        self.pool = LayerPool()
        self.initial_spec = team_to_dict(team)
        self.steps: list[dict[str, Any]] = []
        self.curve: list[dict[str, Any]] = []
        self.val_correct: dict[str, bool] = {}
        self.epoch = self.batch_index = self.step_count = 0
        self.team_usage = Usage()  # training and validation runs of the team
        self.test_usage = Usage()  # the held-out test runs (untrained, trained, baseline), kept apart
        self._testing = False  # runs count in test_usage while True
        self._loss_usage = Usage()
        self.stopped = ""
        self.wall_s = 0.0
        self.resumed_from: int | None = None
        self.endpoints: list[dict[str, Any]] = []  # each model server's limit and omissions (Endpoint.stats)

    @property
    def val_score(self) -> float:
        return sum(self.val_correct.values()) / len(self.val)

    @property
    def tokens(self) -> int:
        return self.team_usage.total_tokens + self.optimizer_usage.total_tokens

    @property
    def optimizer_usage(self) -> Usage:
        return self.optimizer.usage + self._loss_usage

    async def fit(self) -> dict[str, Any]:
        """Trains until the epochs are done or the budget is spent; returns the report (see ``report``)."""
        started = time.perf_counter()
        runtime = self.runtime or Runtime(max_concurrency=self.concurrency)
        self.loss_fn.runtime = self.optimizer.runtime = runtime
        try:
            if not self._resume():
                self.val_correct = await self._score(self.val, runtime)
                self.curve.append({"step": 0, "val": self.val_score, "accepted": True})
                self._log(f"step 0: validation {self.val_score:.3f} ({len(self.val)} problems)")
                self._save()
            while self.epoch < self.epochs and not self.stopped:
                batches = self._batches(self.epoch)
                while self.batch_index < len(batches):
                    if self.budget_tokens is not None and self.tokens >= self.budget_tokens:
                        self.stopped = f"token budget spent ({self.tokens} of {self.budget_tokens})"
                        break
                    await self._step(batches[self.batch_index], runtime)
                    self.batch_index += 1
                    self._save()
                else:
                    self.epoch, self.batch_index = self.epoch + 1, 0
                    self._save()
            self.stopped = self.stopped or "done"
            if self.test:
                await self._held_out_test(runtime)
        finally:
            self.wall_s += time.perf_counter() - started
            self.endpoints = runtime.endpoint_stats()  # what each server turned out to be, for the report
            if self.runtime is None:
                await runtime.aclose()
        self._save()
        from hyperteam.optim.report import build_report

        return build_report(self)

    def fit_sync(self) -> dict[str, Any]:
        """:meth:`fit` for code without an event loop."""
        return asyncio.run(self.fit())

    def _batches(self, epoch: int) -> list[list[Problem]]:
        order = list(self.train)
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return [order[i : i + self.batch] for i in range(0, len(order), self.batch)]

    async def _step(self, problems: list[Problem], runtime: Runtime) -> None:
        self.step_count += 1
        step, before = self.step_count, snapshot(self.team)
        entry: dict[str, Any] = {"step": step, "epoch": self.epoch + 1, "val_before": self.val_score}
        tokens_before = (self.team_usage.total_tokens, self.optimizer_usage.total_tokens)
        results, kinds = await self._run_checked(problems, runtime, f"step {step}'s minibatch")
        failed = Failures()
        failed.add(kinds, results)
        entry["failed"] = failed.to_dict()
        try:
            examples = [
                Example(p.question, p.answer, r)
                for p, r, k in zip(problems, results, kinds, strict=True)
                if r is not None and k is None
            ]
            loss = await self.loss_fn(self.team, examples)
            grads = await loss.backward()
            self._loss_usage = self._loss_usage + loss.usage
            entry.update(train_score=loss.score, global_gradient=grads.global_, gradients=grads.layers)
            records = await self.optimizer.step() if grads.layers else []
            self.optimizer.zero_grad()
            calls = loss.events + (self.optimizer.last_events if records else [])
            entry["optimizer_calls"] = [
                {"kind": ev.kind, "layer": ev.layer, "tokens": ev.usage.total_tokens} for ev in calls
            ]
        except ModelError as exc:  # an endpoint failure costs this step, not the run
            restore(self.team, before)
            entry.update(outcome="error", reason=f"{exc.kind}: {exc}", patches=[])
            records = []
        entry["patches"] = [r.to_dict() for r in records]
        applied = [r for r in records if r.status == "applied"]
        if "outcome" not in entry:
            if not grads.layers and failed.n_failed:
                entry.update(outcome="skipped", reason=f"{failed.describe()}; the others were right: no gradient")
            elif not grads.layers:
                entry.update(outcome="skipped", reason="every answer of the minibatch was right: no gradient")
            elif not applied:
                entry.update(outcome="rejected", reason="no valid patch")
                self.optimizer.record_outcome(False)
            else:
                await self._validate(entry, before, runtime)
                entry["patches"] = [r.to_dict() for r in records]
        entry["val"] = self.val_score
        entry["tokens"] = {
            "team": self.team_usage.total_tokens - tokens_before[0],
            "optimizer": self.optimizer_usage.total_tokens - tokens_before[1],
        }
        self.steps.append(entry)
        self.curve.append({"step": step, "val": self.val_score, "accepted": entry["outcome"] == "accepted"})
        failed_note = f"; {failed.describe()}" if failed.n_failed else ""
        self._log(
            f"step {step} (epoch {entry['epoch']}): {entry['outcome']}; validation {self.val_score:.3f}; "
            f"tokens team {self.team_usage.total_tokens}, optimizer {self.optimizer_usage.total_tokens}{failed_note}"
        )

    async def _validate(self, entry: dict[str, Any], before: dict[str, Any], runtime: Runtime) -> None:
        rng = random.Random(self.seed * 7_919 + self.step_count)
        sample = rng.sample(self.val, self.val_batch)
        new_mb = await self._score(sample, runtime)
        old_right = sum(self.val_correct[p.id] for p in sample)
        new_right = sum(new_mb.values())
        entry["val_minibatch"] = {"before": old_right, "after": new_right, "n": len(sample)}
        accepted = False
        if new_right > old_right:
            rest = await self._score([p for p in self.val if p.id not in new_mb], runtime)
            full = {**new_mb, **rest}
            score = sum(full.values()) / len(self.val)
            entry["val_candidate"] = score
            if score > self.val_score:
                accepted = True
                self.val_correct = full
        if accepted:
            entry.update(outcome="accepted", reason="validation improved on the minibatch and the full set")
            changed = {r["layer"] for r in entry["patches"] if r["status"] == "applied"}
            for layer in self.team.layers:
                if layer.name in changed:
                    self.pool.add(layer, score=self.val_score, step=self.step_count, source=self.team.name)
            patches = [{"layer": r["layer"], "ops": r["text"]} for r in entry["patches"] if r["status"] == "applied"]
            summary = {"step": self.step_count, "val": self.val_score, "patches": patches}
            self.team.history = [*self.team.history, summary]
        else:
            where = "minibatch" if "val_candidate" not in entry else "full validation set"
            entry.update(outcome="reverted", reason=f"validation did not improve on the {where}")
            restore(self.team, before)
        # the change on the full validation set when it was scored, else on the minibatch
        if "val_candidate" in entry:
            change = entry["val_candidate"] - entry["val_before"]
        else:
            change = (new_right - old_right) / len(sample)
        self.optimizer.record_outcome(accepted, val_change=round(change, 4))

    async def _run(
        self, problems: Sequence[Problem], runtime: Runtime, team: LayeredTeam | None = None
    ) -> tuple[list[TeamResult | None], list[str | None]]:
        """Runs the team on each problem; returns the results and, per problem, why it failed (or None)."""
        gate = asyncio.Semaphore(self.concurrency)
        runner = team if team is not None else self.team

        async def one(problem: Problem) -> tuple[TeamResult | None, str | None]:
            async with gate:
                try:
                    result = await runner.run(problem.question, runtime=runtime, model=self.model)
                except HyperteamError as exc:  # a failed problem counts as wrong, as in evals
                    log.info("problem %s failed: %s", problem.id, exc)
                    return None, failure_kind(None, f"{getattr(exc, 'kind', type(exc).__name__)}: {exc}")
            if self._testing:
                self.test_usage = self.test_usage + result.usage
            else:
                self.team_usage = self.team_usage + result.usage
            return result, failure_kind(result)

        pairs = await asyncio.gather(*(one(p) for p in problems))
        return [r for r, _ in pairs], [k for _, k in pairs]

    async def _run_checked(
        self, problems: Sequence[Problem], runtime: Runtime, what: str, team: LayeredTeam | None = None
    ) -> tuple[list[TeamResult | None], list[str | None]]:
        """``_run``, counting failures and fallbacks; raises when more than ``max_failed`` failed."""
        results, kinds = await self._run(problems, runtime, team)
        self.failures.add(kinds, results)
        failed = Failures()
        failed.add(kinds, results)
        if problems and failed.n_failed > self.max_failed * len(problems):
            self.stopped = f"failed: {failed.describe()} in {what}"
            self._save()
            raise ModelError(
                f"{failed.describe()} in {what}: training stops (more than {self.max_failed:.0%} failed). "
                "Check the endpoint (is it up, does it time out?); the checkpoint is kept, so a rerun resumes",
                kind="problems_failed",
            )
        return results, kinds

    async def _score(
        self, problems: Sequence[Problem], runtime: Runtime, team: LayeredTeam | None = None, what: str = "validation"
    ) -> dict[str, bool]:
        return (await self._score_and_tokens(problems, runtime, team, what))[0]

    async def _score_and_tokens(
        self, problems: Sequence[Problem], runtime: Runtime, team: LayeredTeam | None, what: str
    ) -> tuple[dict[str, bool], list[TeamResult | None]]:
        results, _ = await self._run_checked(problems, runtime, what, team)
        right = {p.id: r is not None and r.answer == p.answer for p, r in zip(problems, results, strict=True)}
        return right, results

    async def _held_out_test(self, runtime: Runtime) -> None:
        """Scores the untrained and the trained team on the test problems; fills ``test_report``.

        Its tokens go to ``test_usage``, not ``team_usage``: they are what the claim cost, not training.
        """
        self._testing = True
        try:
            await self._test_and_compare(runtime)
        finally:
            self._testing = False

    async def _test_and_compare(self, runtime: Runtime) -> None:
        untrained_team = team_from_dict(self.initial_spec, source="the untrained team")
        assert isinstance(untrained_team, LayeredTeam)
        before, before_runs = await self._score_and_tokens(
            self.test, runtime, untrained_team, "the test of the untrained team"
        )
        after, after_runs = await self._score_and_tokens(self.test, runtime, None, "the test of the trained team")
        a = [before[p.id] for p in self.test]
        b = [after[p.id] for p in self.test]
        paired = compare_paired(a, b)
        untrained, trained = sum(a) / len(a), sum(b) / len(b)
        self.test_report = {
            "n": len(self.test),
            "untrained": untrained,
            "trained": trained,
            "change": trained - untrained,
            "ci95": [paired.lo, paired.hi],
            "p_value": paired.p_value,
            "significant": paired.p_value < 0.05,
            "only_untrained_right": paired.only_a,
            "only_trained_right": paired.only_b,
            "untrained_val": self.curve[0]["val"] if self.curve else None,
            "trained_val": self.val_score,
            "gap": self.val_score - trained,
            "untrained_tokens": _tokens_per_problem(before_runs),
            "trained_tokens": _tokens_per_problem(after_runs),
        }
        verdict = "significant" if paired.p_value < 0.05 else "not significant"
        self._log(
            f"test ({len(self.test)} held-out problems): untrained {untrained:.3f} -> trained {trained:.3f} "
            f"({trained - untrained:+.3f}, McNemar p = {paired.p_value:.3g}, {verdict}); "
            f"validation {self.val_score:.3f}, gap validation - test {self.val_score - trained:+.3f}; "
            f"tokens per problem {self.test_report['untrained_tokens']:.0f} -> {self.test_report['trained_tokens']:.0f}"
        )
        if self.baseline:
            stopped = self.stopped
            try:
                sc = await self._self_consistency(runtime, b, after_runs)
            except ModelError as exc:  # the baseline fails alone: the trained team's test stands
                self.stopped = stopped  # training itself ended as it did
                self.test_report["self_consistency"] = {"error": str(exc)}
                self._log(f"test: self-consistency failed: {exc}")
                return
            self.test_report["self_consistency"] = sc
            ratio = f"{sc['token_ratio']:.2f}x the trained team's" if sc["token_ratio"] else "nothing to match"
            self._log(
                f"test: self-consistency x{sc['samples']} {sc['accuracy']:.3f} at {sc['tokens']:.0f} tokens per "
                f"problem ({ratio}); minus trained {sc['diff']:+.3f} (McNemar p = {sc['p_value']:.3g})"
                + ("" if sc["equal_tokens"] else "; NOT an equal-token comparison")
            )

    async def _self_consistency(
        self, runtime: Runtime, trained: list[bool], trained_runs: list[TeamResult | None]
    ) -> dict[str, Any]:
        """Self-consistency on the test problems with as many samples as match the trained team's tokens."""
        from hyperteam.evals.baseline import matched_self_consistency, token_match
        from hyperteam.topologies.builtin import self_consistency

        team_tokens = _tokens_per_problem(trained_runs)
        samples, pilot = await matched_self_consistency(
            team_tokens, self.test, model=self.model, runtime=runtime, concurrency=self.concurrency
        )
        spent = pilot["tokens"]
        self.test_usage = self.test_usage + Usage(spent["prompt"], spent["completion"], pilot["calls"])
        right, runs = await self._score_and_tokens(
            self.test, runtime, self_consistency(samples), "the test of self-consistency"
        )
        sc = [right[p.id] for p in self.test]
        paired = compare_paired(trained, sc)
        tokens = _tokens_per_problem(runs)
        return {
            "samples": samples,
            "accuracy": sum(sc) / len(sc),
            "tokens": tokens,
            **token_match(tokens, team_tokens),
            "diff": paired.diff,
            "ci95": [paired.lo, paired.hi],
            "p_value": paired.p_value,
        }

    def _fingerprint(self) -> dict[str, Any]:
        return {
            "team": self.initial_spec.get("name"),
            "train": [p.id for p in self.train],
            "val": [p.id for p in self.val],
            "test": [p.id for p in self.test],
            "epochs": self.epochs,
            "batch": self.batch,
            "seed": self.seed,
        }

    def _save(self) -> None:
        if self.checkpoint is None:
            return
        state = {
            "version": CHECKPOINT_VERSION,
            "fingerprint": self._fingerprint(),
            "team": team_to_dict(self.team),
            "initial_team": self.initial_spec,
            "optimizer": self.optimizer.state_dict(),
            "loss_usage": self._loss_usage.to_dict(),
            "team_usage": self.team_usage.to_dict(),
            "pool": self.pool.to_dict(),
            "position": {"epoch": self.epoch, "batch": self.batch_index, "step": self.step_count},
            "val_correct": self.val_correct,
            "steps": self.steps,
            "curve": self.curve,
            "stopped": self.stopped,
            "wall_s": self.wall_s,
            "failures": {"problems": self.failures.problems, "failed": dict(self.failures.failed),
                         "fallbacks": dict(self.failures.fallbacks), "replies": self.failures.replies_dict()},
        }  # fmt: skip
        tmp = self.checkpoint.with_name(self.checkpoint.name + ".tmp")
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.checkpoint)  # atomic: a kill leaves the old checkpoint or the new one

    def _resume(self) -> bool:
        if self.checkpoint is None or not self.checkpoint.is_file():
            return False
        try:
            state = json.loads(self.checkpoint.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read checkpoint {self.checkpoint}: {exc} (start again with --fresh)") from None
        if state.get("version") != CHECKPOINT_VERSION or state.get("fingerprint") != self._fingerprint():
            raise ConfigError(
                f"checkpoint {self.checkpoint} is of another training run (team, problems, epochs, batch or seed "
                "differ): start again with --fresh, or use another --out"
            )
        team = team_from_dict(state["team"], source=str(self.checkpoint))
        restore(self.team, snapshot(team))
        self.initial_spec = state["initial_team"]
        self.optimizer.load_state_dict(state["optimizer"])
        self._loss_usage, self.team_usage = _usage(state["loss_usage"]), _usage(state["team_usage"])
        self.pool = LayerPool.from_dict(state["pool"])
        pos = state["position"]
        self.epoch, self.batch_index, self.step_count = pos["epoch"], pos["batch"], pos["step"]
        self.val_correct = state["val_correct"]
        self.steps, self.curve = state["steps"], state["curve"]
        self.stopped = "" if state["stopped"].startswith("token budget") else state["stopped"]
        self.wall_s = state["wall_s"]
        saved = state.get("failures", {})
        self.failures = Failures(
            saved.get("problems", 0),
            Counter(saved.get("failed", {})),
            Counter(saved.get("fallbacks", {})),
            {agent: Counter(c) for agent, c in saved.get("replies", {}).items()},
        )
        if self.stopped.startswith("failed:"):
            self.stopped = ""  # a run stopped by failures resumes once the endpoint is back
        self.resumed_from = self.step_count
        self._log(f"resuming from checkpoint {self.checkpoint}: after step {self.step_count}, epoch {self.epoch + 1}")
        return True


def _usage(d: dict[str, Any]) -> Usage:
    return Usage(d["prompt_tokens"], d["completion_tokens"], d["calls"], d["latency_s"])


def log_line(line: str) -> None:
    log.info("%s", line)


def _tokens_per_problem(results: Sequence[TeamResult | None]) -> float:
    """Mean tokens a problem (a failed run's tokens are not known: it counts none)."""
    return sum(r.usage.total_tokens for r in results if r is not None) / max(1, len(results))
