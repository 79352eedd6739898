"""Traced training steps: the Pyro program's loss recorded once as a graph of tensor ops, then replayed.

Running a Pyro model and guide costs Python work on every step (effect handlers, trace objects,
distribution objects): about 1 ms per step on a CPU, the same at batch 4 as at batch 1024. For a
program whose structure does not depend on the data, ``TracedLoss`` records the loss once per input
signature with ``torch.fx``'s ``make_fx`` on fake tensors (no real data are touched, and Python
branching on tensor values raises instead of being baked in), keeps the graph of ATen ops, and
replays it on later steps; autograd differentiates the replay as usual. The ops, and the order in
which they draw random numbers, are the ones the Pyro program runs, so a replayed step gives the
same loss, gradients and random draws as the eager one.

A graph is kept under a key holding everything it bakes in: the shapes, dtypes and devices of the
inputs, parameters and buffers, and the Python side of the program (each module's class, mode,
hooks and plain attributes, e.g. a likelihood's minimum scale, and the objective's settings), so a
changed setting records a new graph. The first step of each key checks the graph: it runs the Pyro
program and the graph from the same random state and compares the losses and gradients. A program
that cannot be traced runs eagerly (``TracedLoss.reason`` says why); a graph whose check or replay
fails makes training fall back to the Pyro program with one warning. Only objectives whose loss is a
function of ``(vae, x, mask, beta)`` alone are tried: the ELBO and the IWAE bound (the mean-field
ELBO too, but Pyro's TraceMeanField_ELBO reads a tensor value in its NaN check, so it runs eagerly);
objectives with their own state or per-batch penalties run eagerly.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Any, Optional, Union, cast

import pyro
import torch
from torch import nn

from ppl_vae.objectives.schedules import ConstantBeta
from ppl_vae.registry import ConfigError

MODES = ("auto", True, False, "compile")
MAX_SIGNATURES = 8  # full batch, last partial batch, ...: more than this means shapes keep changing


def traceable(objective: Any) -> bool:
    """Whether ``objective``'s training loss is ``loss_at(vae, x, mask, beta(step))`` and nothing else."""
    from ppl_vae.objectives.elbo import ELBOObjective

    return isinstance(objective, ELBOObjective) and type(objective).loss is ELBOObjective.loss and objective.traceable


class _LossAt(nn.Module):
    """``forward(x, mask, beta) = objective.loss_at(vae, x, mask, beta)``: what ``functional_call`` swaps tensors into."""

    def __init__(self, vae: nn.Module, objective: Any) -> None:
        super().__init__()
        self.vae, self.objective = vae, objective

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor], beta: torch.Tensor) -> torch.Tensor:
        return self.objective.loss_at(self.vae, x, mask, beta)


class TracedLoss:
    """``objective.loss(vae, x, mask, step)``, replayed from a recorded graph where that is exact.

    ``mode``: "auto" traces where possible and falls back quietly; True also warns on a fallback;
    "compile" also compiles each graph with ``torch.compile`` (inductor: fused kernels, with eager
    random number generation kept so draws match the Pyro program; seconds of compilation per input
    shape, and a C++ compiler on CPU); False never traces. ``traced`` says whether the last call
    replayed a graph.
    """

    _beta_value: float  # the beta that self._beta holds (set with it)

    def __init__(self, vae: nn.Module, objective: Any, mode: Union[str, bool] = "auto") -> None:
        if not any(mode is m or mode == m for m in MODES):
            raise ConfigError(f"trace must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
        self.vae, self.objective, self.mode = vae, objective, mode
        self.module = _LossAt(vae, objective)
        self.graphs: dict = {}
        self.reason: Optional[str] = None
        if not mode or not traceable(objective):
            self.reason = "tracing is off, or the objective's loss is not a function of (x, mask, beta) alone"
        elif getattr(vae, "use_param_store", False):
            self.reason = "the VAE keeps its parameters in Pyro's global param store"
        self.traced = False
        self._beta: Optional[torch.Tensor] = None

    def __call__(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None, step: int = 0, **kwargs: Any) -> torch.Tensor:
        if self.reason is not None or kwargs:
            self.traced = False
            return self.objective.loss(self.vae, x, mask, step=step, **kwargs)
        beta = self._beta_tensor(self.objective.beta(step), x.device)
        state = self._state()
        graph = self.graphs.get(self._key(state, x, mask))
        if graph is None:
            return self._first_step(state, x, mask, beta)
        try:
            loss = graph(list(state.values()), x, mask, beta)
        except Exception as e:  # noqa: BLE001  (a replay that fails: the Pyro program itself, from now on)
            return self._fall_back(f"a replay failed ({type(e).__name__}: {_first_line(e)})", x, mask, beta)
        self.traced = True
        return loss

    def _key(self, state: dict, x: torch.Tensor, mask: Optional[torch.Tensor]) -> tuple:
        """Everything that changes the recorded graph: the inputs' shapes, dtypes and devices, the
        parameters' and buffers' names, shapes, dtypes and devices, and the Python side of the program
        (each module's class, mode, hooks and plain attributes, such as a likelihood's minimum scale,
        and the objective's settings; not the beta schedule, whose value is an input of the graph)."""
        return (
            _signature(x),
            None if mask is None else _signature(mask),
            tuple((name, _signature(t)) for name, t in state.items()),
            tuple((name, type(m), _settings(m)) for name, m in self.vae.named_modules()),
            _settings(self.objective),
        )

    # ---- internals ----------------------------------------------------------------------------
    def _state(self) -> dict:
        return {f"vae.{k}": v for k, v in [*self.vae.named_parameters(), *self.vae.named_buffers()]}

    def _beta_tensor(self, beta, device) -> torch.Tensor:
        """A 0-dim tensor holding beta, made anew (on the device, no host copy) only when beta changes."""
        if torch.is_tensor(beta):
            return beta
        if self._beta is None or self._beta.device != device or self._beta_value != beta:
            self._beta, self._beta_value = torch.full((), float(beta), device=device), beta
        return self._beta

    def _record(self, state: dict, x, mask, beta):
        from torch.fx.experimental.proxy_tensor import make_fx

        names = list(state)

        def loss(tensors, x, mask, beta):
            return torch.func.functional_call(self.module, dict(zip(names, tensors)), (x, mask, beta))

        tables = [(m, dict(m._parameters), dict(m._buffers)) for m in self.vae.modules()]
        try:
            with pyro.validation_enabled(False):
                graph = make_fx(loss, tracing_mode="fake")(list(state.values()), x, mask, beta)
        finally:  # a module reached by two paths (a VampPrior's encoder) may keep the fakes swapped in
            for module, params, buffers in tables:
                module._parameters.update(params)
                module._buffers.update(buffers)
        _simplify(graph)
        return graph

    def _first_step(self, state, x, mask, beta) -> torch.Tensor:
        """Record; run the Pyro program and the graph from the current random state and compare them;
        then compute this step's loss (from that same random state) by the graph if they agreed."""
        if len(self.graphs) >= MAX_SIGNATURES:
            return self._give_up(f"more than {MAX_SIGNATURES} input shapes", x, mask, beta)
        try:
            graph = self._record(state, x, mask, beta)
            if self.mode == "compile":
                graph = _compile(graph, list(state.values()), x, mask, beta)
        except Exception as e:  # noqa: BLE001  (any failure to trace means: run the Pyro program itself)
            detail = _first_line(e)
            if "DataDependent" in type(e).__name__:
                detail = "Python code branches on a tensor's value, e.g. `if x.sum() > 0`"
            return self._give_up(f"the program could not be traced ({type(e).__name__}: {detail})", x, mask, beta)
        state = self._state()  # the program may have made state while it was recorded (a flow's lazy parameters)
        with torch.random.fork_rng(devices=_rng_devices(x)):
            eager = self.objective.loss_at(self.vae, x, mask, beta)
        try:
            with torch.random.fork_rng(devices=_rng_devices(x)):
                check = graph(list(state.values()), x, mask, beta)
            problem = _compare(eager, check, [t for t in state.values() if t.requires_grad])
        except Exception as e:  # noqa: BLE001  (the check itself failed: the graph cannot stand for the program)
            problem = f"its replay raised {type(e).__name__}: {_first_line(e)}"
        if problem:
            return self._fall_back(f"the traced step differs from the Pyro program ({problem})", x, mask, beta)
        self.graphs[self._key(state, x, mask)] = graph  # keyed as the program now stands
        self.traced = True
        return graph(list(state.values()), x, mask, beta)

    def _fall_back(self, reason: str, x, mask, beta) -> torch.Tensor:
        """A recorded graph that does not stand for the program: say so once, run the program from now on."""
        self.reason, self.traced, self.graphs = reason, False, {}
        warnings.warn(f"ppl-vae: training runs the Pyro program eagerly from now on (slower): {reason}", stacklevel=3)
        return self.objective.loss_at(self.vae, x, mask, beta)

    def _give_up(self, reason: str, x, mask, beta) -> torch.Tensor:
        self.reason, self.traced = reason, False
        self._warn()
        return self.objective.loss_at(self.vae, x, mask, beta)

    def _warn(self) -> None:
        if self.mode is True or self.mode == "compile":
            warnings.warn(f"ppl-vae: training runs the Pyro program eagerly (slower): {self.reason}", stacklevel=3)


_PLAIN = (bool, int, str, type(None), torch.dtype, torch.device)
_EXACT = frozenset({bool, int, str, type(None)})
_SKIP = frozenset({"_parameters", "_buffers", "_modules", "_ppl_vae_recipe"})  # covered elsewhere in the key
_COVERED = (nn.Module, torch.Tensor, ConstantBeta)  # by the rest of the key; a beta schedule's value is an input


def _signature(t: torch.Tensor) -> tuple:
    return tuple(t.shape), t.dtype, t.device, t.requires_grad


def _settings(obj: Any, depth: int = 0) -> tuple:
    """The Python-side settings of a module or objective that a recorded graph bakes in: its plain
    attributes (numbers by their exact value), the keys of its hook tables, the classes and settings of
    plain objects it holds (one level down). Modules and tensors are covered by the rest of the key."""
    out = []
    for name, value in vars(obj).items():
        kind = type(value)
        if kind in _EXACT:
            out.append((name, value))
        elif kind is dict or kind is OrderedDict:
            if value and name not in _SKIP:  # empty hook tables (the usual case) cost nothing
                out.append((name, _value(value, depth)))
        elif not isinstance(value, _COVERED):
            out.append((name, _value(value, depth)))
    return tuple(out)


def _value(value: Any, depth: int) -> Any:
    if isinstance(value, float):
        return float.hex(value)  # exact, and NaN equals itself
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, (tuple, list, frozenset, set)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return type(value).__name__, tuple(_value(v, depth) for v in items)
    if isinstance(value, dict):  # hook tables and option dicts: their keys and plain values
        return tuple(
            (repr(k), _value(v, depth) if isinstance(v, (float, *_PLAIN)) else type(v).__qualname__) for k, v in value.items()
        )
    if callable(value) and not hasattr(value, "__dict__"):
        return getattr(value, "__qualname__", type(value).__qualname__)
    if depth == 0 and hasattr(value, "__dict__") and not isinstance(value, type):
        return type(value).__qualname__, _settings(value, depth + 1)
    return getattr(value, "__qualname__", type(value).__qualname__)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]


def _compare(eager: torch.Tensor, replay: torch.Tensor, params) -> str:
    """'' when the two losses and their gradients agree, else what differs."""
    if eager.shape != replay.shape or not torch.allclose(eager.detach(), replay.detach(), rtol=1e-5, atol=1e-6):
        return f"loss {eager.detach().sum().item():.6g} vs {replay.detach().sum().item():.6g}"
    if not params or not eager.requires_grad:
        return ""
    g_eager = torch.autograd.grad(eager.sum(), params, allow_unused=True)
    g_replay = torch.autograd.grad(replay.sum(), params, allow_unused=True)
    for a, b in zip(g_eager, g_replay):  # relative to each gradient's norm: fused kernels round differently
        if (a is None) != (b is None) or (a is not None and float((a - b).norm()) > 1e-5 * float(a.norm()) + 1e-8):
            return "gradients"
    return ""


def _compile(graph, *example):
    """``torch.compile`` of a recorded graph, compiled now (forward and backward) with inductor drawing
    random numbers through the eager ops, so that compiled and eager steps use the same draws."""
    import torch._inductor.config as inductor_config

    compiled = torch.compile(graph, dynamic=False)
    tensors, x = example[0], example[1]
    grads = [t.grad for t in tensors]
    with inductor_config.patch(fallback_random=True), torch.random.fork_rng(devices=_rng_devices(x)):
        out = compiled(*example)
        if out.requires_grad:
            out.sum().backward()  # compiles the backward too; these gradients are thrown away
    for t, g in zip(tensors, grads):
        t.grad = g
    return compiled


def _rng_devices(x: torch.Tensor) -> list:
    """The CUDA devices whose random state ``fork_rng`` must save for work on ``x``."""
    if x.device.type != "cuda":
        return []
    return [torch.cuda.current_device() if x.device.index is None else x.device.index]


_IDENTITY = {  # op -> the scalar operand that leaves the other operand unchanged
    torch.ops.aten.add.Tensor: 0,
    torch.ops.aten.sub.Tensor: 0,
    torch.ops.aten.mul.Tensor: 1,
    torch.ops.aten.div.Tensor: 1,
}
_VIEWS = {torch.ops.aten.view.default, torch.ops.aten.expand.default, torch.ops.aten.reshape.default}


def _simplify(gm) -> None:
    """Drop ops that return their input (x + 0, x * 1, x / 1, views to the same shape) and fold
    deterministic ops on recorded constants (Pyro's zero log-densities of plate index sites)."""
    graph = gm.graph
    for node in list(graph.nodes):
        if node.op != "call_function" or not node.args or not hasattr(node.args[0], "meta"):
            continue
        src, out, inp = node.args[0], node.meta.get("val"), node.args[0].meta.get("val")
        if not (torch.is_tensor(out) and torch.is_tensor(inp) and out.shape == inp.shape and out.dtype == inp.dtype):
            continue
        scalar = node.args[1] if len(node.args) == 2 and not node.kwargs else None
        if node.target in _VIEWS or (
            node.target in _IDENTITY
            and isinstance(scalar, (int, float))
            and not isinstance(scalar, bool)
            and scalar == _IDENTITY[node.target]
        ):
            node.replace_all_uses_with(src)
            graph.erase_node(node)
    for node in list(graph.nodes):
        inputs = node.all_input_nodes
        if (
            node.op != "call_function"
            or not inputs
            or any(n.op != "get_attr" for n in inputs)
            or not isinstance(node.target, torch._ops.OpOverload)
            or node.target._schema.is_mutable
            or torch.Tag.nondeterministic_seeded in node.target.tags
        ):
            continue
        # every input is a get_attr node, whose target is the attribute's name
        args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), lambda n: getattr(gm, cast(str, n.target)))
        value = node.target(*args, **kwargs)
        if not torch.is_tensor(value):
            continue
        name = f"_folded_{node.name}"
        gm.register_buffer(name, value)
        with graph.inserting_before(node):
            const = graph.get_attr(name)
        node.replace_all_uses_with(const)
        graph.erase_node(node)
    graph.eliminate_dead_code()
    graph.lint()
    gm.recompile()
