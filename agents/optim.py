"""``FlatAdam``: Adam with per-member gradient-norm clipping for a population whose parameters share one buffer.

The speed of the PPO update on a CPU is per-call overhead, not arithmetic (two 64×64 MLPs, minibatches of ~128).
Every parameter and gradient of the population lives in one ``[P, D]`` buffer (member k's parameters are row k,
in the member module's order), so an optimizer step and the gradient-norm clip are a handful of tensor ops
whatever the number of layers and members, and each member still has everything of its own: its gradient norm,
its clip threshold, its learning rate, its Adam moments and step count, and whether it steps at all (a member
stopped by its target KL does not).
"""

from __future__ import annotations

import warnings
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import torch

Tensor = torch.Tensor

# Member k's parameters are row k of the flat buffer, so a parameter ``[P, …]`` is a strided view of it (row stride
# = the member's whole parameter count). Autograd accumulates gradients into such a view correctly, and says once
# that the layout is not the one it would have chosen; with P = 1 the views are dense and it says nothing.
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")


class FlatAdam:
    """Adam over population parameters ``[P, …]`` (leading member axis) kept in one flat ``[P, D]`` buffer.

    Per member the arithmetic of ``torch.optim.Adam(foreach=True)`` (a population on the CPU: of
    ``Adam(fused=True)``, equal up to float rounding) preceded by ``clip_grad_norm_`` (the norm is taken over the
    member's flat gradient, equal up to float rounding), but:

    - each parameter's ``data`` and ``grad`` are re-pointed at views of two flat tensors, so a step is ~10 tensor
      ops whatever the number of layers or members, instead of per-parameter ops plus torch.optim's bookkeeping;
    - ``torch.optim`` is not touched: its first use imports ``torch._dynamo``, a noticeable share of a short run's
      start-up.

    ``zero_grad`` of a population sets each ``.grad`` to None (``torch.optim``'s default), so that the next backward
    hands its fresh gradients over instead of adding them into zeroed views; ``clip_grad_norm_`` and ``step`` copy
    them into the flat gradient (one pass over it instead of a fill and an add), as they do a ``.grad`` someone else
    replaced. A solo run's gradients are small enough that the fill and the adds cost less than that loop: it zeroes
    the flat gradient in place. ``member_state_dict(k)`` has
    ``torch.optim.Adam``'s layout for member k's parameters, so a member's checkpoint loads into either.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: Union[float, Sequence[float]],
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = [p for p in params if p.requires_grad]
        self.members = self.params[0].shape[0]
        P = self.members
        sizes = [p[0].numel() for p in self.params]
        total = sum(sizes)
        device = self.params[0].device  # the population's: every buffer lives beside the parameters
        self.flat = torch.empty(P, total, device=device)
        self.flat_grad = torch.zeros(P, total, device=device)
        self.exp_avg = torch.zeros(P, total, device=device)
        self.exp_avg_sq = torch.zeros(P, total, device=device)
        self.steps = np.zeros(P, dtype=np.int64)
        """Adam steps taken by each member (host-side: the bias corrections are a few scalars per step)."""
        self.lr = np.zeros(P)
        self.set_lr(lr)
        self.betas, self.eps = (float(betas[0]), float(betas[1])), float(eps)
        self._slices: list[slice] = []
        offset = 0
        with torch.no_grad():
            for p, n in zip(self.params, sizes):
                sl = slice(offset, offset + n)
                self.flat[:, sl].copy_(p.reshape(P, n))
                p.data = self.flat[:, sl].view(p.shape)
                p.grad = self.flat_grad[:, sl].view(p.shape)
                self._slices.append(sl)
                offset = sl.stop
        self._grads = [p.grad for p in self.params]
        self._data_ptrs = [p.data_ptr() for p in self.params]
        self._fused_lists: Optional[list] = None
        """A population on the CPU steps with PyTorch's fused Adam kernel (what ``torch.optim.Adam(fused=True)``
        runs), member k's rows of the four buffers as one tensor each, with its own step count: one pass over
        memory instead of ~8 element-wise passes. A solo run (and a GPU) keeps the ``foreach`` arithmetic. The
        kernel's five lists (parameters, gradients, moments, step counts), entry k member k's."""
        if P > 1 and device.type == "cpu" and hasattr(torch, "_fused_adam_"):
            self._step_counts = torch.zeros(P)
            self._fused_lists = [list(buffer.unbind(0)) for buffer in (self.flat, self.flat_grad, self.exp_avg,
                                                                         self.exp_avg_sq, self._step_counts)]

    def set_lr(self, lr: Union[float, Sequence[float]]) -> None:
        """One learning rate for every member, or one per member."""
        self.lr[:] = np.broadcast_to(np.asarray(lr, dtype=np.float64), (self.members,))

    def zero_grad(self) -> None:
        if self.members == 1:
            self.flat_grad.zero_()
            return
        for p in self.params:
            p.grad = None

    def _sync_grads(self) -> None:
        """Copy each parameter's gradient into the flat one and make its view the ``.grad`` again (after
        ``zero_grad``, or ``module.zero_grad()``, set it to None; a parameter with none gets zeros)."""
        for p, view in zip(self.params, self._grads):
            if p.grad is not view:
                if p.grad is None:
                    view.zero_()
                else:
                    view.copy_(p.grad)
                p.grad = view

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: Union[float, Tensor]) -> Tensor:
        """Scale member k's gradient by min(1, max_norm_k / (‖g_k‖ + 1e-6)) as ``clip_grad_norm_`` does; a
        member whose ``max_norm`` is 0 is not clipped. Returns the norms ``[P]``."""
        self._sync_grads()
        norms = torch.linalg.vector_norm(self.flat_grad, dim=1)
        scale = torch.clamp(max_norm / (norms + 1e-6), max=1.0)
        if isinstance(max_norm, Tensor) and bool((max_norm <= 0).any()):
            scale = torch.where(max_norm > 0, scale, torch.ones_like(scale))
        self.flat_grad.mul_(scale.unsqueeze(1))
        return norms

    def _per_member(self, values: np.ndarray) -> Union[float, Tensor]:
        """A scalar when every member has the same value (the cheaper op), else a ``[P, 1]`` tensor."""
        if self.members == 1 or (values == values[0]).all():
            return float(values[0])
        return torch.from_numpy(values.astype(np.float32)).unsqueeze(1).to(self.flat.device)

    @torch.no_grad()
    def step(self, active: Optional[Tensor] = None) -> None:
        """One Adam step for every member, or only for those where ``active`` (``[P]`` bool) is true: the others'
        parameters, moments and step counts stay as they are."""
        if [p.data_ptr() for p in self.params] != self._data_ptrs:
            raise RuntimeError("FlatAdam: a parameter's .data no longer lives in the flat buffer (e.g. after "
                               "module.to(...)): build the optimizer again after such a change")
        self._sync_grads()
        beta1, beta2 = self.betas
        if self._fused_lists is not None:
            self._fused_step(active)
            return
        if active is None:
            self.steps += 1
            self.exp_avg.lerp_(self.flat_grad, 1 - beta1)
            self.exp_avg_sq.mul_(beta2).addcmul_(self.flat_grad, self.flat_grad, value=1 - beta2)
            lr = self.lr
        else:
            on_np = active.cpu().numpy().astype(bool)
            on = active.to(self.exp_avg.dtype).unsqueeze(1)
            self.steps += on_np
            self.exp_avg.lerp_(self.flat_grad, (1 - beta1) * on)
            self.exp_avg_sq.mul_(1 - (1 - beta2) * on).addcmul_(self.flat_grad, self.flat_grad * on,
                                                               value=1 - beta2)
            lr = self.lr * on_np  # a member that does not step moves by 0
        if self.members == 1:  # a solo run: Python scalars
            t = max(int(self.steps[0]), 1)
            step_size, bias2 = -float(lr[0]) / (1 - beta1 ** t), (1 - beta2 ** t) ** 0.5
        else:
            steps = np.maximum(self.steps, 1)  # a member that never stepped: no 0/0 (its step size is 0 anyway)
            step_size = self._per_member(-lr / (1 - beta1 ** steps))
            bias2 = self._per_member(np.sqrt(1 - beta2 ** steps))
        denom = self.exp_avg_sq.sqrt().div_(bias2).add_(self.eps)
        if isinstance(step_size, float):
            self.flat.addcdiv_(self.exp_avg, denom, value=step_size)
        else:
            self.flat.addcdiv_(self.exp_avg * step_size, denom)

    def _fused_step(self, active: Optional[Tensor]) -> None:
        """``step`` with the fused kernel, one call per distinct learning rate among the members that step."""
        assert self._fused_lists is not None
        rows = np.arange(self.members) if active is None else np.flatnonzero(active.cpu().numpy())
        self.steps[rows] += 1
        self._step_counts.copy_(torch.from_numpy(self.steps.astype(np.float32)))
        lrs = self.lr[rows]
        for lr in np.unique(lrs):
            together = rows[lrs == lr]
            lists = self._fused_lists if len(together) == self.members else \
                [[entries[k] for k in together] for entries in self._fused_lists]
            params, grads, exp_avgs, exp_avg_sqs, steps = lists
            torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, lr=float(lr), beta1=self.betas[0],
                               beta2=self.betas[1], weight_decay=0.0, eps=self.eps, amsgrad=False, maximize=False)

    # --- per-member state, in torch.optim.Adam's layout ---------------------------------------------------------
    def _group(self, k: int) -> dict:
        return {"lr": float(self.lr[k]), "betas": self.betas, "eps": self.eps, "weight_decay": 0,
                "amsgrad": False, "maximize": False, "foreach": True, "capturable": False, "differentiable": False,
                "fused": None, "decoupled_weight_decay": False}

    def member_state_dict(self, k: int) -> dict:
        state = {}
        if self.steps[k] > 0:
            state = {i: {"step": torch.tensor(float(self.steps[k])),
                         "exp_avg": self.exp_avg[k, sl].view(p.shape[1:]).cpu().clone(),
                         "exp_avg_sq": self.exp_avg_sq[k, sl].view(p.shape[1:]).cpu().clone()}
                     for i, (p, sl) in enumerate(zip(self.params, self._slices))}
        return {"state": state, "param_groups": [{**self._group(k), "params": list(range(len(self.params)))}]}

    def load_member_state_dict(self, k: int, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            raise ValueError("loaded optimizer state does not match this network's parameters")
        state = state_dict["state"]
        with torch.no_grad():
            self.exp_avg[k].zero_()
            self.exp_avg_sq[k].zero_()
            self.steps[k] = int(float(state[0]["step"])) if state else 0
            for i, (p, sl) in enumerate(zip(self.params, self._slices)):
                if state:
                    self.exp_avg[k, sl].copy_(state[i]["exp_avg"].reshape(-1))
                    self.exp_avg_sq[k, sl].copy_(state[i]["exp_avg_sq"].reshape(-1))
        self.lr[k] = float(groups[0]["lr"])
