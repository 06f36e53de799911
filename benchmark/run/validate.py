"""The method plugin contract, checked: what `python -m benchmark validate` runs.

A method that passes can be pretrained, probed and fine-tuned by the harness without surprises.
For each preset the method is built exactly as the runner builds it (the preset's input and
model size, the method's defaults, ``--set`` overrides) and checked on a small batch of smooth
multi-lead signals (sums of sinusoids, so that masked patches are predictable):

=============== ============================================================================
check           what must hold
=============== ============================================================================
build           the method constructs for the preset's input spec
metadata        it has a one-line ``summary`` and a docstring (sources and [choice] items)
shapes          ``encode(return_hidden=True)``: pooled (B, feature_dim); hidden states a
                non-empty list of (B, tokens, width); all finite
deterministic   ``features`` gives identical output twice in eval mode
readout         ``readout(readout_inputs(x))`` equals ``features(x)`` (frozen protocols use it)
lead_mask       features ignore the signal of masked leads (only I and II kept)
single_lead     a single present lead (I, V1 or V6) gives finite features
loss            ``pretrain_loss`` is a finite scalar that requires grad, and it reports at
                least one ``trivial/NAME`` entry: the same objective for a trivial predictor
                on the same targets (finite scalars without grad), so that the harness can
                tell a run that learned from one that did not
keyed_noise     the loss does not depend on the global RNG but on ``batch.keys``: masking
                noise comes from ``benchmark.rng`` so that a sample is masked alike whatever
                the batch split, device or resume point
loss_lead_mask  with missing leads (down to one per record) the loss is finite and ignores the
                masked leads' signal
gradients       the loss reaches every trainable parameter except ``downstream_only`` ones
param_roles     downstream outputs depend on exactly the parameters that are not
                ``pretraining_only`` (so ``encoder_parameters()`` and fine-tuning are right);
                a method without parameters (a feature extractor) passes with nothing to check
layer_ids       ``layer_id`` maps every parameter into [0, num_layers)
overfit         training on two records with fixed masks lowers the loss by 3 %; a method
                trained supervised only (``supervised_only``: no pretraining loss) instead
                lowers a linear head's BCE on fixed labels of the batch's records by 3 %
compute         parameter counts and counted FLOPs of one pretraining step (one supervised
                step for methods trained supervised only)
=============== ============================================================================

Schedules inside the objective are set to their end-of-training value first
(``on_train_step(n, n)``), so annealed terms (MVMAE's beta) take part in every check.
The ``light`` mode (used for the ViT-B-sized ``paper`` preset) runs every check at batch 1 but
``overfit``. The global RNG state is restored afterwards.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from tabulate import tabulate

from benchmark.data.contract import LEADS, InputSpec
from benchmark.data.loader import Batch
from benchmark.method.base import Method
from benchmark.method.variant import MethodVariant
from benchmark.nn.layers import TRIVIAL
from benchmark.rng import epoch_keys
from benchmark.run.build import method_config, method_spec
from benchmark.run.presets import Preset
from benchmark.train.flops import parameter_counts, pretrain_step_flops, supervised_step_flops

PASS, FAIL, SKIP = "PASS", "FAIL", "skip"
#: the fraction by which the loss must fall when overfitting: far above float noise (the
#: masks and data are fixed) and reached by every built-in method (small MAEs on raw targets
#: learn slowly: LAMAE falls about 7 % in 30 steps on the smoke preset)
OVERFIT_MIN_FALL = 0.03


class ContractFailure(Exception):
    """A check's condition does not hold; the message says what was seen."""


class Skipped(Exception):
    """A check that does not apply to this method (e.g. no pretraining)."""


@dataclass
class Check:
    name: str
    status: str
    detail: str
    seconds: float = 0.0


@dataclass
class ContractReport:
    method: str
    preset: str
    input: InputSpec
    checks: list[Check] = field(default_factory=list)
    encoder_params: int | None = None
    total_params: int | None = None
    flops_per_sample: float | None = None
    pretrain_batch_size: int | None = None

    @property
    def passed(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    @property
    def flops_per_step(self) -> float | None:
        if self.flops_per_sample is None or self.pretrain_batch_size is None:
            return None
        return self.flops_per_sample * self.pretrain_batch_size


def run_check(name: str, check: Callable[[], str]) -> tuple[Check, Exception | None]:
    """One check, timed: PASS with the detail it returns, skip on :class:`Skipped`, FAIL on
    :class:`ContractFailure` or any other exception (a broken plugin is reported, not allowed to
    crash the check; that exception is returned too)."""
    started, error = time.perf_counter(), None
    try:
        status, detail = PASS, check()
    except Skipped as exc:
        status, detail = SKIP, str(exc)
    except ContractFailure as exc:
        status, detail = FAIL, str(exc)
    except Exception as exc:
        status, detail, error = FAIL, f"{type(exc).__name__}: {exc}", exc
    return Check(name, status, detail, time.perf_counter() - started), error


def contract_batch(spec: InputSpec, batch_size: int, seed: int = 0) -> Batch:
    """Smooth 12-lead signals: per lead two sinusoids (0.5-3 Hz) with random phase and
    amplitude plus a little noise, all leads present."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(spec.window) / spec.fs
    shape = (batch_size, len(LEADS), 2, 1)
    freq = 0.5 + 2.5 * torch.rand(shape, generator=g)
    phase = 2 * math.pi * torch.rand(shape, generator=g)
    amp = 0.5 + torch.rand(shape, generator=g)
    signals = (amp * torch.sin(2 * math.pi * freq * t + phase)).sum(dim=2)
    signals = signals + 0.05 * torch.randn(signals.shape, generator=g)
    index = torch.arange(batch_size)
    return Batch(
        signals,
        torch.ones(batch_size, len(LEADS), dtype=torch.bool),
        torch.zeros(batch_size, 1),
        index,
        torch.from_numpy(epoch_keys(seed, 0, index.numpy())),
    )


def _masked(batch: Batch, lead_mask: torch.Tensor) -> Batch:
    return replace(batch, signals=batch.signals * lead_mask[:, :, None], lead_mask=lead_mask)


def _scramble_masked_leads(batch: Batch, seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    noise = 100 * torch.randn(batch.signals.shape, generator=g)
    return replace(batch, signals=torch.where(batch.lead_mask[:, :, None], batch.signals, noise))


def _seeded_loss(method: Method, batch: Batch, seed: int) -> torch.Tensor:
    """The loss with the global RNG seeded too, for plugins that (against the contract's
    ``keyed_noise``) still draw from it: their other checks then stay meaningful."""
    torch.manual_seed(seed)
    return method.pretrain_loss(batch)["loss"]


def _names(names: list[str], limit: int = 4) -> str:
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(torch.allclose(a, b, rtol=1e-4, atol=1e-5))


class _Contract:
    """The checks for one method and preset, in order; each returns a detail string."""

    def __init__(
        self,
        method_cls: type[Method],
        name: str,
        config,
        preset: Preset,
        light: bool,
        overfit_steps: int,
        overfit_lr: float,
    ):
        self.method_cls, self.config, self.preset = method_cls, config, preset
        self.light, self.overfit_steps, self.overfit_lr = light, overfit_steps, overfit_lr
        self.batch = contract_batch(preset.input, 1 if light else 4)
        self.method: Method | None = None
        self.report = ContractReport(name, preset.name, preset.input, pretrain_batch_size=preset.pretrain.batch_size)

    def run(self) -> ContractReport:
        checks: list[tuple[str, Callable[[], str]]] = [
            ("build", self.build),
            ("metadata", self.metadata),
            ("shapes", self.shapes),
            ("deterministic", self.deterministic),
            ("readout", self.readout),
            ("lead_mask", self.lead_mask),
            ("single_lead", self.single_lead),
            ("loss", self.loss),
            ("keyed_noise", self.keyed_noise),
            ("loss_lead_mask", self.loss_lead_mask),
            ("gradients", self.gradients),
            ("param_roles", self.param_roles),
            ("layer_ids", self.layer_ids),
            ("overfit", self.overfit),
            ("compute", self.compute),
        ]
        for name, check in checks:
            if self.method is None and name != "build":
                self.report.checks.append(Check(name, SKIP, "method did not build"))
                continue
            self.report.checks.append(run_check(name, check)[0])
            if self.method is not None:
                self.method.zero_grad(set_to_none=True)
        return self.report

    # -- the checks ----------------------------------------------------------------------------
    def build(self) -> str:
        torch.manual_seed(0)
        self.method = self.method_cls(self.config, self.preset.input)
        self.method.on_train_step(self.preset.pretrain.steps, self.preset.pretrain.steps)
        spec = self.method.input_spec  # the runner crops the method's window (an external encoder declares its own)
        if spec.window != self.preset.input.window:
            self.batch = contract_batch(spec, len(self.batch.signals))
        patch = f"patch {self.method.patch_len}" if self.method.uses_model_size else "no patches"
        return f"{spec.fs} Hz, {spec.window} samples, {patch}; feature_dim {self.method.feature_dim}"

    @property
    def built(self) -> Method:
        """The method under test: every check after ``build`` runs only once it built (see ``run``)."""
        if self.method is None:
            raise Skipped("method did not build")
        return self.method

    def metadata(self) -> str:
        cls = self.method_cls
        if not cls.summary.strip():
            raise ContractFailure("set the class attribute `summary` (one line for `benchmark list`)")
        module_doc = getattr(sys.modules.get(cls.__module__), "__doc__", None)
        if not (cls.__doc__ or module_doc):
            raise ContractFailure("add a docstring naming the paper, the code checked against and every [choice]")
        return cls.summary

    def shapes(self) -> str:
        method, batch = self.built.eval(), self.batch
        with torch.no_grad():
            encoded = method.encode(batch.signals, batch.lead_mask, return_hidden=True)
        b, dim = len(batch), method.feature_dim
        if tuple(encoded.pooled.shape) != (b, dim):
            raise ContractFailure(f"pooled is {tuple(encoded.pooled.shape)}, expected (B, feature_dim) = {(b, dim)}")
        hidden = encoded.hidden_states
        if not hidden:
            raise ContractFailure("encode(return_hidden=True) returned no hidden states")
        bad = [i for i, h in enumerate(hidden) if h.ndim != 3 or h.shape[0] != b]
        if bad:
            raise ContractFailure(
                f"hidden states {bad} are not (B, tokens, width): {[tuple(hidden[i].shape) for i in bad[:3]]}"
            )
        if not torch.isfinite(encoded.pooled).all() or not all(torch.isfinite(h).all() for h in hidden):
            raise ContractFailure("non-finite values in pooled features or hidden states")
        widths = sorted({tuple(h.shape[1:]) for h in hidden})
        return f"pooled {tuple(encoded.pooled.shape)}; {len(hidden)} hidden states of (tokens, width) {_names([str(w) for w in widths], 3)}"

    def _features(self, batch: Batch) -> torch.Tensor:
        self.built.eval()
        with torch.no_grad():
            return self.built.features(batch.signals, batch.lead_mask)

    def deterministic(self) -> str:
        first, second = self._features(self.batch), self._features(self.batch)
        if not torch.equal(first, second):
            raise ContractFailure(
                f"two eval-mode calls differ by up to {(first - second).abs().max():.3g}; "
                "masking or dropout must be off outside pretrain_loss / train mode"
            )
        return "identical output twice in eval mode"

    def readout(self) -> str:
        method, batch = self.built.eval(), self.batch
        with torch.no_grad():
            inputs = method.readout_inputs(batch.signals, batch.lead_mask)
            via_readout = method.readout(inputs)
        features = self._features(batch)
        if via_readout.shape != features.shape or not _close(via_readout, features):
            raise ContractFailure("readout(readout_inputs(x)) differs from features(x)")
        trainable = [n for n, _ in method.named_parameters() if method.is_downstream_only(n)]
        return f"trainable readout: {len(trainable)} tensors" if trainable else "features are the readout"

    def lead_mask(self) -> str:
        mask = torch.zeros_like(self.batch.lead_mask)
        mask[:, :2] = True  # leads I and II only
        kept = _masked(self.batch, mask)
        reference = self._features(kept)
        scrambled = self._features(_scramble_masked_leads(kept, seed=1))
        if not _close(reference, scrambled):
            raise ContractFailure(
                f"features change by {(reference - scrambled).abs().max():.3g} when only masked "
                "leads change; exclude masked leads (attention mask, indexing or zero-fill)"
            )
        return "features with leads I, II unchanged when the 10 masked leads are replaced by noise"

    def single_lead(self) -> str:
        for lead in (0, 6, 11):
            mask = torch.zeros_like(self.batch.lead_mask)
            mask[:, lead] = True
            features = self._features(_masked(self.batch, mask))
            if features.shape != (len(self.batch), self.built.feature_dim) or not torch.isfinite(features).all():
                raise ContractFailure(
                    f"lead {LEADS[lead]} alone gives {tuple(features.shape)} features, finite: "
                    f"{bool(torch.isfinite(features).all())}"
                )
        return "I, V1 and V6 alone each give finite features"

    def _require_pretraining(self) -> None:
        if not self.method_cls.pretrains:
            raise Skipped("pretrains = False")

    def loss(self) -> str:
        self._require_pretraining()
        self.built.train()
        torch.manual_seed(0)
        out = self.built.pretrain_loss(self.batch)
        loss = out["loss"]
        if loss.ndim != 0 or not loss.requires_grad or not torch.isfinite(loss):
            raise ContractFailure(
                f"loss must be a finite scalar that requires grad, got shape {tuple(loss.shape)}, "
                f"value {loss.detach().flatten()[:3].tolist()}, requires_grad {loss.requires_grad}"
            )
        trivial = {k: v for k, v in out.items() if k.startswith(TRIVIAL)}
        if not trivial:
            raise ContractFailure(
                f"pretrain_loss reports no '{TRIVIAL}NAME' entry: return the loss of a trivial predictor on the same "
                "targets beside the loss (ecgbench.layers.reconstruction_loss gives predicting zero and each lead's "
                "visible mean), so that a run that learned nothing is recognised"
            )
        bad = [k for k, v in trivial.items() if v.ndim != 0 or v.requires_grad or not torch.isfinite(v) or v <= 0]
        if bad:
            raise ContractFailure(f"{_names(bad)}: trivial losses must be positive finite scalars without grad")
        ratio = loss.item() / min(v.item() for v in trivial.values())
        return f"{loss.item():.4f} ({ratio:.2f} of the best of {_names(sorted(trivial))})"

    def keyed_noise(self) -> str:
        self._require_pretraining()
        self.built.train()
        with torch.no_grad():
            first = _seeded_loss(self.built, self.batch, seed=0)
            reseeded = _seeded_loss(self.built, self.batch, seed=1)
            rekeyed = _seeded_loss(self.built, replace(self.batch, keys=self.batch.keys + 1), seed=0)
        if not _close(first, reseeded):
            raise ContractFailure(
                f"loss changes from {first.item():.6f} to {reseeded.item():.6f} with the global "
                "RNG seed; draw masking noise from batch.keys (ecgbench.rng), not torch.rand"
            )
        # exact: with the global RNG fixed, only the keys differ, and a patch-normalised target
        # makes an untrained model's loss nearly mask-independent (ST-MEM at batch 1: < 1e-4)
        if torch.equal(first, rekeyed):
            raise ContractFailure("loss does not change with batch.keys; masks must be drawn from them")
        return "loss independent of the global RNG, changes with batch.keys"

    def loss_lead_mask(self) -> str:
        self._require_pretraining()
        if len(self.batch) < 4:
            mask = torch.zeros_like(self.batch.lead_mask)
            mask[:, 1] = True  # lead II only
        else:
            mask = torch.ones_like(self.batch.lead_mask)
            mask[1, 6:] = False  # limb leads only
            mask[2] = False
            mask[2, 1] = True  # lead II only
            mask[3, :6] = False  # chest leads only
        batch = _masked(self.batch, mask)
        self.built.train()
        with torch.no_grad():
            reference = _seeded_loss(self.built, batch, seed=3)
            scrambled = _seeded_loss(self.built, _scramble_masked_leads(batch, seed=2), seed=3)
        if not torch.isfinite(reference):
            raise ContractFailure(f"loss is {reference.item()} with missing leads")
        if not _close(reference, scrambled):
            raise ContractFailure(
                f"loss changes from {reference.item():.6f} to {scrambled.item():.6f} when only masked leads change"
            )
        return f"{reference.item():.4f} with records of 12, 6, 1 and 6 leads; masked leads ignored"

    def gradients(self) -> str:
        self._require_pretraining()
        method = self.built.train()
        _seeded_loss(method, self.batch, seed=0).backward()
        trained = [(n, p) for n, p in method.named_parameters() if p.requires_grad and not method.is_downstream_only(n)]
        missing = [n for n, p in trained if p.grad is None or not p.grad.abs().sum() > 0]
        broken = [n for n, p in trained if p.grad is not None and not torch.isfinite(p.grad).all()]
        if missing or broken:
            raise ContractFailure(
                f"no gradient reaches {_names(missing)}" if missing else f"non-finite gradient in {_names(broken)}"
            )
        return f"all {len(trained)} trainable tensors get a finite, non-zero gradient"

    def param_roles(self) -> str:
        method, batch = self.built.eval(), self.batch
        if not any(p.requires_grad for p in method.parameters()):
            return "no trainable parameters: nothing is trained downstream"
        projection = torch.randn(method.feature_dim, generator=torch.Generator().manual_seed(5))
        (method.features(batch.signals, batch.lead_mask) * projection).sum().backward()
        params = list(method.named_parameters())
        used = {n for n, p in params if p.grad is not None and p.grad.abs().sum() > 0}
        downstream = {n for n, p in params if p.requires_grad and not method.is_pretraining_only(n)}
        unused = sorted(downstream - used)
        leaking = sorted(used - downstream)
        if unused:
            raise ContractFailure(
                f"downstream outputs do not depend on {_names(unused)}; declare them in "
                "`pretraining_only` (or use them)"
            )
        if leaking:
            raise ContractFailure(f"downstream outputs depend on pretraining_only parameters {_names(leaking)}")
        return f"features use exactly the {len(downstream)} non-pretraining-only tensors"

    def layer_ids(self) -> str:
        method = self.built
        n_layers = method.num_layers
        wrong = [n for n, _ in method.named_parameters() if not 0 <= method.layer_id(n) < n_layers]
        if wrong:
            raise ContractFailure(f"layer_id out of [0, {n_layers}) for {_names(wrong)}")
        return f"{n_layers} layer ids"

    def overfit(self) -> str:
        if self.method_cls.supervised_only() and not self.light:
            return self._overfit_supervised()
        self._require_pretraining()
        if self.light:
            raise Skipped("light mode (paper scale)")
        method = self.built.train()
        batch = Batch(
            *(
                t[:2]
                for t in (
                    self.batch.signals,
                    self.batch.lead_mask,
                    self.batch.labels,
                    self.batch.index,
                    self.batch.keys,
                )
            )
        )
        params = [p for n, p in method.named_parameters() if p.requires_grad and not method.is_downstream_only(n)]
        optimizer = torch.optim.AdamW(params, lr=self.overfit_lr, weight_decay=0.0)
        with torch.no_grad():
            before = _seeded_loss(method, batch, seed=0).item()
        for _ in range(self.overfit_steps):  # the same batch and the same masks every step
            loss = _seeded_loss(method, batch, seed=0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
        with torch.no_grad():
            after = _seeded_loss(method, batch, seed=0).item()
        detail = f"{before:.4f} -> {after:.4f} after {self.overfit_steps} AdamW steps (lr {self.overfit_lr:g})"
        if not after < (1 - OVERFIT_MIN_FALL) * before:
            raise ContractFailure(f"loss did not fall by {OVERFIT_MIN_FALL:.0%}: {detail}")
        return detail

    def _overfit_supervised(self) -> str:
        """A linear head on the features, trained with the method on fixed labels of the batch's
        records (dropout and stochastic depth drawn alike for every evaluation of the loss)."""
        method, batch = self.built.train(), self.batch
        labels = (torch.rand(len(batch), 3, generator=torch.Generator().manual_seed(7)) < 0.5).float()
        head = torch.nn.Linear(method.feature_dim, labels.shape[1])

        def loss() -> torch.Tensor:
            torch.manual_seed(0)
            return F.binary_cross_entropy_with_logits(head(method.features(batch.signals, batch.lead_mask)), labels)

        params = [p for p in (*method.parameters(), *head.parameters()) if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.overfit_lr, weight_decay=0.0)
        with torch.no_grad():
            before = loss().item()
        for _ in range(self.overfit_steps):
            optimizer.zero_grad(set_to_none=True)
            loss().backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
        with torch.no_grad():
            after = loss().item()
        detail = f"supervised BCE {before:.4f} -> {after:.4f} after {self.overfit_steps} AdamW steps (lr {self.overfit_lr:g})"
        if not after < (1 - OVERFIT_MIN_FALL) * before:
            raise ContractFailure(f"loss did not fall by {OVERFIT_MIN_FALL:.0%}: {detail}")
        return detail

    def compute(self) -> str:
        counts = parameter_counts(self.built)
        self.report.encoder_params, self.report.total_params = counts["encoder_params"], counts["total_params"]
        detail = (
            f"{format_count(counts['encoder_params'])} encoder / {format_count(counts['total_params'])} total params"
        )
        if self.method_cls.pretrains:
            self.report.flops_per_sample = pretrain_step_flops(self.built, self.batch) / len(self.batch)
            detail += (
                f"; {format_count(self.report.flops_per_step)} FLOP per pretraining step of "
                f"{self.report.pretrain_batch_size} (measured at batch {len(self.batch)})"
            )
        elif self.method_cls.supervised_only():
            per_sample = supervised_step_flops(self.built, self.batch, n_labels=1) / len(self.batch)
            detail += f"; {format_count(per_sample)} FLOP per record of a supervised step"
        return detail


def format_count(n: float | None) -> str:
    if n is None:
        return "—"
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def validate_method(
    method: type[Method] | str | MethodVariant,
    preset: Preset,
    light: bool = False,
    overfit_steps: int = 30,
    overfit_lr: float = 3e-3,
) -> ContractReport:
    """Run the contract on one method or method variant (``lamae[la_tokens=patch]``), or on a
    method class registered or not, for one preset, built the runner's way."""
    name = method.name if isinstance(method, (type, MethodVariant)) else method
    with torch.random.fork_rng(devices=[]):
        try:
            if isinstance(method, type):
                method_cls, config = method, method_config(method, preset)
            else:
                spec = method_spec(method, preset)
                method_cls, name, config = spec.cls, spec.name, spec.config
        except Exception as exc:
            report = ContractReport(name, preset.name, preset.input)
            report.checks.append(Check("build", FAIL, f"config: {type(exc).__name__}: {exc}"))
            return report
        return _Contract(method_cls, name, config, preset, light, overfit_steps, overfit_lr).run()


def render_report(report: ContractReport) -> str:
    spec = report.input
    title = (
        f"{report.method} · preset {report.preset} ({spec.fs} Hz, {spec.window_s:g} s): "
        f"{'PASS' if report.passed else 'FAIL'}"
    )
    rows = [(c.name, c.status, c.detail) for c in report.checks]
    return f"{title}\n{tabulate(rows, headers=('check', 'result', 'detail'), tablefmt='simple', maxcolwidths=[None, None, 100])}"


def render_summary(reports: list[ContractReport], reference_params: dict[str, int], reference: str) -> str:
    rows = []
    for r in reports:
        ref = reference_params.get(r.preset)
        delta = f"{100 * (r.encoder_params / ref - 1):+.1f} %" if r.encoder_params is not None and ref else "—"
        failed = [c.name for c in r.checks if c.status == FAIL]
        rows.append(
            (
                r.method,
                r.preset,
                "PASS" if r.passed else "FAIL: " + ", ".join(failed),
                format_count(r.encoder_params),
                delta,
                format_count(r.flops_per_step),
            )
        )
    return tabulate(
        rows,
        headers=("method", "preset", "contract", "encoder params", f"Δ vs {reference}", "FLOP/pretrain step"),
        tablefmt="simple",
    )
