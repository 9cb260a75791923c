"""The layered team of the Agentic Neural Network (ANN, arXiv 2506.09046): forward pass.

Each layer is a small team on one subtask. Its agents run in parallel on the
layer's input, their outputs are fused by the layer's aggregator, and the
fused output is the next layer's input: ``I_1 = task``, ``O_l = f_l(agents_l(I_l))``,
``I_{l+1} = O_l``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from hyperteam.agents.agent import Agent
from hyperteam.errors import ConfigError
from hyperteam.fusion import Fusion, get_fusion
from hyperteam.topologies.result import RunContext, TeamResult
from hyperteam.topologies.team import Team


class Layer(BaseModel):
    """One layer: agents that work one subtask in parallel, and the fusion that joins them.

    Example:
        >>> solver = Agent(name="solver", role="math tutor")
        >>> layer = Layer("solve", agents=[solver.clone(name=f"s{i}") for i in range(3)],
        ...               fusion="majority_vote")
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, validate_assignment=True)

    name: str
    agents: list[Agent] = Field(min_length=1)
    fusion: str | dict[str, Any] = "majority_vote"
    input_title: str = "Result of the previous step"
    candidates: list[str | dict[str, Any]] = Field(default_factory=list)
    """Other aggregators the router may pick per task instead of ``fusion`` (``router="llm"``)."""
    router: Literal["fixed", "llm"] = "fixed"
    """``fixed``: always ``fusion``; ``llm``: a model picks among ``fusion`` and ``candidates`` per task."""
    refine: int = Field(default=0, ge=0, le=10)
    """Rounds of test-time refinement (critique, then revision) of this layer's fused output."""

    _fusion_impl: Fusion | None = PrivateAttr(default=None)

    def __init__(self, name: str | None = None, /, **data: Any) -> None:
        if name is not None:
            data["name"] = name
        super().__init__(**data)

    @field_validator("fusion")
    @classmethod
    def _check_fusion(cls, value: str | dict[str, Any]) -> str | dict[str, Any]:
        try:
            get_fusion(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None  # pydantic adds where in the spec it was
        return value

    @field_validator("candidates")
    @classmethod
    def _check_candidates(cls, value: list[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
        for i, spec in enumerate(value):
            try:
                get_fusion(spec)
            except ConfigError as exc:
                raise ValueError(f"candidate {i}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _unique_agents(self) -> Layer:
        names = [a.name for a in self.agents]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate agent names in layer {self.name!r}: {', '.join(dupes)}")
        self._fusion_impl = None
        sampled = [a.name for a in self.agents if a.samples > 1]
        drivers = [f for f in [self.fusion, *self.candidates] if get_fusion(f).drives_agents]
        if sampled and drivers:
            raise ValueError(
                f"agent {sampled[0]!r} has samples > 1, but this layer's fusion calls its agents one by one"
                f" ({get_fusion(drivers[0]).name}): use samples only with fusions that read the agents' outputs"
            )
        return self

    @property
    def fusion_impl(self) -> Fusion:
        if self._fusion_impl is None:
            self._fusion_impl = get_fusion(self.fusion)
        return self._fusion_impl


class LayeredTeam(Team):
    """A team of layers run in order, each fused by its own aggregator (the ANN forward pass).

    Compiles to a LangGraph graph in which the agents of a layer fan out in
    parallel and the layer's fusion is the join.

    Example:
        >>> import hyperteam as ht
        >>> team = ht.LayeredTeam([ht.Layer("solve", agents=[ht.Agent(name="a"), ht.Agent(name="b")])],
        ...                       model="sim:0.8")
        >>> result = team.run_sync("Janet's ducks lay 16 eggs per day ...")  # doctest: +SKIP
    """

    kind: Literal["layered"] = "layered"
    layers: list[Layer] = Field(min_length=1)

    def __init__(self, layers: list[Layer] | None = None, /, **data: Any) -> None:
        if layers is not None:
            data["layers"] = layers
        super().__init__(**data)

    @model_validator(mode="after")
    def _unique_names(self) -> LayeredTeam:
        layer_names = [layer.name for layer in self.layers]
        agent_names = [a.name for layer in self.layers for a in layer.agents]
        for what, names in (("layer", layer_names), ("agent", agent_names)):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate {what} names: {', '.join(dupes)}")
        return self

    @property
    def agents(self) -> list[Agent]:
        return [a for layer in self.layers for a in layer.agents]

    def _build(self) -> Any:
        from hyperteam.topologies._graph import compile_layered

        return compile_layered(self)

    async def _execute(self, task: str, ctx: RunContext) -> TeamResult:
        from hyperteam.topologies._graph import run_compiled

        return await run_compiled(self.compile(), task, ctx)
