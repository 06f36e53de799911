"""The pretraining regime study (issue 20): where do the pretraining methods learn?

Each setting is an ordinary benchmark run (``python -m benchmark run --protocols linear
--no-references``) into its own scratch folder ``runs/regime/<dataset>/<setting>/``, so it uses
exactly the suite's data, budget, pretraining loop and linear probe; the table reads the results
back: the final pretraining loss over the best trivial predictor's loss on the same masked targets
(``loss / trivial``, :class:`benchmark.train.pretrain.PretrainReport`), the linear-probe macro
AUROC, steps and wall time. Beside it, what a *trivial-but-informed* predictor reaches on the same
masked targets (:func:`oracle_ratios`): linear interpolation inside each lead, the same lead one
beat away, and a least-squares map from the other leads' visible samples at the same instant — an
upper-bound-free hint of how much of the target is predictable at all, and from where (``oracles
--patch-s S``, repeatable, at other patch lengths).

    python benchmarks/pretraining_regime.py run --dataset synthetic      # every setting, resumable
    python benchmarks/pretraining_regime.py run --dataset pool
    python benchmarks/pretraining_regime.py table > docs/pretraining-regime-table.md
    python benchmarks/pretraining_regime.py curves --dataset synthetic --out docs/pretraining-regime-synthetic.png
    python benchmarks/pretraining_regime.py curves --dataset pool --figure masks --out docs/pretraining-regime-pool-masks.png

The long budget that says how many steps each method needs to reach issue 20's target (the
table's "first ≤ 0.6 at step"), one seed, quickest on a GPU:

    python benchmarks/pretraining_regime.py run --only "16x budget (9600 steps)" --device cuda --seeds 1

On CPU cores, ``--methods st_mem`` (say) runs only those of a setting's methods, so that one process per
core can share the setting.

Settings already finished are found finished (the runner's own result identity), so the command
resumes after an interruption.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "regime"
SHARED = ROOT.parent / "shared" / "data"

#: dataset name -> the `run` arguments that select it (the real pool: PTB-XL records 1-999,
#: pretrained on their training folds with LUDB and the CinC sample, as the real-data tables)
DATASETS = {
    "synthetic": [],
    "pool": [
        "--dataset",
        "ptbxl",
        "--root",
        str(SHARED / "ptbxl1000"),
        "--labels",
        "superdiagnostic",
        "--pretrain-data",
        f"ptbxl,ludb:{SHARED / 'ludb'},cinc:{SHARED / 'cinc2021'}",
        "--set",
        "cinc.val_fraction=0",
        "--set",
        "cinc.test_fraction=0",
    ],
}

#: the real pool's three pretraining datasets (a data setting is given to each of them)
POOL = ("ptbxl", "ludb", "cinc")


def on_pool(preprocess: str) -> list[str]:
    """``preprocess`` (``FIELD=VALUE``) as the `--set` value of every dataset of the pool."""
    return [f"{name}.preprocess.{preprocess}" for name in POOL]


#: LAMAE's and Ind_P's masking until the study's findings made mask ratio 0.5 (and α_LA 0.25) their
#: defaults (the `cpu-long` preset, benchmark/run/presets.py): a setting ran at these unless it names
#: its own masking, so it names them, and a rerun computes what the study's table reports
LAMAE_EARLIER = "lamae[la_mask_ratio=0.5,mask_ratio=0.75]"
IND_P_EARLIER = "ind_p[mask_ratio=0.75]"
EARLIER = f"{LAMAE_EARLIER},{IND_P_EARLIER}"

#: setting name -> (methods, extra `--set` values); every setting runs at the cpu preset. The values
#: are a list for every dataset, or a dict of each dataset's list for a setting that runs only on
#: the datasets it names (a data setting such as a band-pass filter has no meaning on the synthetic
#: default, whose signals are generated clean)
SETTINGS: dict[str, tuple[str, list[str] | dict[str, list[str]]]] = {
    "cpu preset": (f"{EARLIER},st_mem", []),
    "lamae, lead-level reading": ("lamae[la_mask_ratio=0.5,la_skip=true,la_tokens=lead,mask_ratio=0.75]", []),
    "mask ratio 0.5": ("lamae[la_mask_ratio=0.5,mask_ratio=0.5],ind_p[mask_ratio=0.5],st_mem[mask_ratio=0.5]", []),
    "lr x4 (base 1.2e-2)": (EARLIER, ["pretrain.optim.base_lr=1.2e-2"]),
    "lr x0.25 (base 7.5e-4)": (LAMAE_EARLIER, ["pretrain.optim.base_lr=7.5e-4"]),
    "4x budget (2400 steps)": (f"{EARLIER},st_mem", ["pretrain.steps=2400"]),
    # about 35 minutes of LAMAE alone on 2 quiet CPU cores (0.21 s a step; docs/pretraining-regime.md,
    # section 4); the steps at which each method first reaches TARGET_RATIO are what a preset needs
    "16x budget (9600 steps)": (f"{EARLIER},st_mem", ["pretrain.steps=9600"]),
    # twice that: ST-MEM, still falling at 16x (0.635 synthetic, 0.643 pool), crosses TARGET_RATIO here
    # (84-90 minutes a run as one single-thread process beside another on 2 CPU cores); LAMAE and Ind_P
    # on the pool, where they were furthest from it (docs/pretraining-regime.md, "32x")
    "32x budget (19200 steps)": (f"{EARLIER},st_mem", ["pretrain.steps=19200"]),
    # levers at 4x on real data, where LAMAE and Ind_P learn much slower than on the synthetic
    # default (section 4 of docs/pretraining-regime.md); the baseline is "4x budget (2400 steps)"
    "4x, lr x4 (base 1.2e-2)": (EARLIER, ["pretrain.steps=2400", "pretrain.optim.base_lr=1.2e-2"]),
    "4x, band-pass 0.67-40 Hz": (
        EARLIER,
        {"pool": ["pretrain.steps=2400", *on_pool("bandpass_hz=0.67,40")]},
    ),
    # one scale per record (lead ratios kept, as ST-MEM's code standardises): unit-variance input and
    # targets instead of raw mV (std ~0.15), to test whether the scale the network must first adapt to
    # is what keeps the per-lead methods near the trivial loss
    "4x, per-record standardisation": (
        EARLIER,
        {"pool": ["pretrain.steps=2400", *on_pool("standardize=record")]},
    ),
    # four decoder blocks instead of the preset's one (the paper preset's depth; in MAE's ablation a
    # deeper decoder raised linear-probe accuracy): whether the small decoder limits the per-lead methods
    "4x, decoder depth 4": (EARLIER, ["pretrain.steps=2400", "model.decoder_depth=4"]),
    # twice the encoder width (LA's too; 2.5x LAMAE's FLOPs a step), for the FLOPs of the 16x setting
    # (3,840 LAMAE steps): whether the per-lead methods, whose 32x runs on the pool follow their 16x
    # curves, are short of capacity rather than of steps
    "16x FLOPs, width 128": (EARLIER, ["pretrain.steps=3840", "model.dim=128"]),
    # half the patches of each lead masked instead of 0.75, at the 16x setting's FLOPs (more visible
    # patches make an encoder step costlier, so fewer steps): at 0.5 a linear map from the other
    # leads' samples at the same instant explains 47 % of the masked targets' variance on PTB-XL, at
    # 0.75 31 % (section 2 of docs/pretraining-regime.md) — whether the per-lead methods, slow to
    # find that cross-lead route on real ECGs, learn faster where more of it is visible
    "16x, mask ratio 0.5": ("lamae[la_mask_ratio=0.5,mask_ratio=0.5],ind_p[mask_ratio=0.5]", ["pretrain.steps=9600"]),
    # LAMAE's M_LA hiding a quarter of each lead's visible latents instead of half (the paper gives no
    # value; 0.5 is the suite's choice): of a lead's 20 patches (5 s of 0.25 s) 5 are visible and LA
    # sees 3 of them (5 - floor(2.5)), so the lead's decoder reads LA's output at 3 patches in 20; at
    # 0.25 at 4 (and at mask ratio 0.5, 5 of 10)
    "16x, LA mask ratio 0.25": ("lamae[la_mask_ratio=0.25,mask_ratio=0.75]", ["pretrain.steps=9600"]),
    # both: at mask ratio 0.5 Ind_P, whose decoder reads all of a lead's visible patches, learned much
    # faster than at 0.75, LAMAE, whose decoder reads only what M_LA leaves LA, barely; with M_LA at
    # 0.25 as well a LAMAE decoder reads 8 of 20 patches (Ind_P's at mask 0.5: 10)
    "16x, mask ratio 0.5, LA mask ratio 0.25": ("lamae[mask_ratio=0.5,la_mask_ratio=0.25]", ["pretrain.steps=9600"]),
    # the candidate preset's masking for the per-lead methods (both [choice] values; ST-MEM keeps its
    # paper's 0.75) at twice the FLOPs: whether it takes them to issue 20's target
    "32x, lower masking (mask ratio 0.5, LA 0.25)": (
        "lamae[mask_ratio=0.5,la_mask_ratio=0.25],ind_p[mask_ratio=0.5]",
        ["pretrain.steps=19200"],
    ),
}

#: issue 20's target: a method learned when its final loss is at most this fraction of the trivial loss
TARGET_RATIO = 0.6
FIRST = f"first ≤ {TARGET_RATIO} at step"  # the table's column


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def run(
    dataset: str, only: list[str], device: str = "auto", seeds: str | None = None, subset: str | None = None
) -> None:
    """Run every setting (or those named in ``only``) on ``device``, at ``seeds`` (run's default: 3);
    ``subset`` (comma-separated) keeps only those of each setting's methods, so two processes can
    share a setting's methods between them (one CPU core each, say)."""
    from benchmark.cli import main

    unknown = [name for name in only if name not in SETTINGS]
    if unknown:
        sys.exit(f"--only {unknown[0]!r}: no such setting; the settings are: " + "; ".join(map(repr, SETTINGS)))
    for name, (methods, sets) in SETTINGS.items():
        if only and name not in only:
            continue
        if isinstance(sets, dict):
            if dataset not in sets:
                if only:
                    sys.exit(f"--only {name!r}: the setting runs only on {', '.join(sets)}, not on {dataset}")
                continue
            sets = sets[dataset]
        if subset:
            methods = select(methods, subset, name)
        out = RUNS / dataset / slug(name)
        argv = ["run", "--methods", methods, "--protocols", "linear", "--no-references", "--no-progress"]
        argv += ["--device", device, *(["--seeds", seeds] if seeds else [])]
        argv += ["--results", str(out), "--leaderboard", str(out.with_suffix(".md")), *DATASETS[dataset]]
        for value in sets:
            argv += ["--set", value]
        print(f"== {dataset} · {name}: {' '.join(argv)}", flush=True)
        code = main(argv)
        if code:
            sys.exit(code)


def select(methods: str, subset: str, setting: str) -> str:
    """The setting's methods (a comma-separated spec list) whose name is in ``subset``, in the setting's
    order; a name the setting does not run is refused with the setting's list."""
    from benchmark.method.variant import split_names

    wanted = split_names(subset)
    listed = split_names(methods)
    missing = [name for name in wanted if name not in listed]
    if missing:
        sys.exit(f"--methods {missing[0]!r}: setting {setting!r} runs only {methods}")
    return ",".join(name for name in listed if name in wanted)


def rows() -> list[dict]:
    found = []
    for dataset in DATASETS:
        for name in SETTINGS:
            for path in sorted((RUNS / dataset / slug(name)).rglob("linear_seed*.json")):
                record = json.loads(path.read_text())
                pretrain = record["compute"]["pretrain"] or {}
                found.append(
                    {
                        "dataset": dataset,
                        "setting": name,
                        "method": record["cell"]["method"],
                        "seed": record["cell"]["seed"],
                        "steps": pretrain.get("steps"),
                        "loss / trivial": pretrain.get("loss_ratio"),
                        "start": pretrain.get("start_ratio"),
                        FIRST: first_below(
                            pretrain.get("loss_curve") or [], pretrain.get("trivial_curve") or [], TARGET_RATIO
                        ),
                        "macro AUROC": record["metrics"]["macro_auroc"],
                        "pretrain s": pretrain.get("wall_s"),
                    }
                )
    return found


def first_below(
    loss_curve: list[tuple[int, float]], trivial_curve: list[tuple[int, dict[str, float]]], target: float
) -> int | None:
    """The first logged step whose loss is at most ``target`` of the lowest trivial loss of the same
    interval (None if none is): the budget a preset needs for the method to learn."""
    trivial = {step: min(losses.values()) for step, losses in trivial_curve if losses}
    for step, loss in loss_curve:
        if step in trivial and trivial[step] > 0 and loss / trivial[step] <= target:
            return int(step)
    return None


#: figure name -> (what it shows, the settings whose finished runs it draws); one figure each, as a
#: dozen curves in one plot are no longer told apart
FIGURES: dict[str, tuple[str, list[str]]] = {
    "budgets": (
        "longer budgets at the cpu preset's sizes, a wider encoder",
        ["4x budget (2400 steps)", "16x budget (9600 steps)", "32x budget (19200 steps)", "16x FLOPs, width 128"],
    ),
    "masks": (
        "lower masking ratios at the 16x and 32x budgets' FLOPs",
        [
            "16x budget (9600 steps)",
            "16x, mask ratio 0.5",
            "16x, LA mask ratio 0.25",
            "16x, mask ratio 0.5, LA mask ratio 0.25",
            "32x, lower masking (mask ratio 0.5, LA 0.25)",
        ],
    ),
}


def curves(dataset: str, path: Path, figure: str = "budgets") -> Path | None:
    """loss / trivial against pretraining FLOPs for every finished run of ``figure``'s settings
    (:data:`FIGURES`) on ``dataset`` (one line per method, setting and seed, the trivial level and
    issue 20's target as lines), drawn by the leaderboard's own training-curve plot; None when no
    such run is finished. A line is named by the method without its variant: the setting names it."""
    from benchmark.report.leaderboard import pretraining_run
    from benchmark.report.plots import Run, training_curves_plot

    shows, settings = FIGURES[figure]
    runs: dict[str, list[Run]] = {}
    for name in settings:
        for record_path in sorted((RUNS / dataset / slug(name)).rglob("linear_seed*.json")):
            record = json.loads(record_path.read_text())
            curve = pretraining_run(record["compute"]["pretrain"] or {})
            if curve is not None:
                method = record["cell"]["method"].split("[")[0]
                runs.setdefault(f"{method} · {name.split(' (')[0]}", []).append(curve)
    if not runs:
        return None
    title = f"pretraining regime study · {dataset} · {shows}"
    return training_curves_plot(path, title, runs, {}, TARGET_RATIO, threshold_label="issue 20's target")


def table() -> str:
    from tabulate import tabulate

    body = [
        {
            **r,
            "loss / trivial": f"{r['loss / trivial']:.3f}" if r["loss / trivial"] else "—",
            "start": f"{r['start']:.2f}" if r["start"] else "—",
            "macro AUROC": f"{r['macro AUROC']:.3f}",
            "pretrain s": f"{r['pretrain s']:.0f}",
            FIRST: "—" if r[FIRST] is None else str(r[FIRST]),
        }
        for r in rows()
    ]
    return tabulate(body, headers="keys", tablefmt="github", disable_numparse=True)


def oracle_ratios(signals: np.ndarray, lead_mask: np.ndarray, patch: int, mask_ratio: float) -> dict[str, float]:
    """Loss over the best trivial predictor's for three informed non-learned predictors on the
    masked patches of ``signals`` (B, 12, T), masked as the suite masks (each lead its own keys):
    ``interpolation`` (linear, inside each lead, between its visible samples), ``one beat away``
    (inside each lead, the visible samples one rhythm period away: :func:`one_beat_away`) and ``other leads``
    (per lead, least squares on the other leads' visible samples at the same instant, fitted on
    these records: an in-sample fit, so an optimistic reading of what is linear)."""
    import torch

    from benchmark import rng
    from benchmark.nn.layers import random_keep_ids

    b, leads, t = signals.shape
    n = t // patch
    keep = random_keep_ids(rng.split(torch.arange(b), leads), n, max(1, round(n * (1 - mask_ratio)))).numpy()
    visible = np.zeros((b, leads, n), bool)
    np.put_along_axis(visible, keep, True, axis=2)
    visible = np.repeat(visible, patch, axis=2)
    scored = ~visible & lead_mask[:, :, None]
    x = np.where(lead_mask[:, :, None], signals, 0.0)

    def loss(pred):
        return float(((pred - x) ** 2)[scored].mean())

    mean = np.where(visible, x, 0).sum(2, keepdims=True) / np.maximum(visible.sum(2, keepdims=True), 1)
    trivial = min(loss(np.zeros_like(x)), loss(np.broadcast_to(mean, x.shape)))
    steps = np.arange(t)
    interpolated = np.stack(
        [np.stack([np.interp(steps, steps[v], row[v]) for row, v in zip(rec, vis)]) for rec, vis in zip(x, visible)]
    )
    seen = np.where(visible, x, 0.0)
    other = np.zeros_like(x)
    for lead in range(leads):
        rest = [k for k in range(leads) if k != lead]
        design = np.concatenate(
            [
                seen[:, rest].transpose(0, 2, 1).reshape(-1, len(rest)),
                visible[:, rest].transpose(0, 2, 1).reshape(-1, len(rest)),
                np.ones((b * t, 1)),
            ],
            axis=1,
        )
        fit = scored[:, lead].reshape(-1)
        coef, *_ = np.linalg.lstsq(design[fit], x[:, lead].reshape(-1)[fit], rcond=None)
        other[:, lead] = (design @ coef).reshape(b, t)
    beat = one_beat_away(seen, visible, mean, round(0.3 * t / 5), round(2.0 * t / 5))
    return {
        "interpolation": loss(interpolated) / trivial,
        "one beat away": loss(beat) / trivial,
        "other leads": loss(other) / trivial,
    }


def one_beat_away(seen: np.ndarray, visible: np.ndarray, mean: np.ndarray, shortest: int, longest: int) -> np.ndarray:
    """Each sample predicted, inside its own lead, by the visible samples one period before and
    after it (two periods where neither is visible, else the lead's visible mean); the period is
    each record's lag between ``shortest`` and ``longest`` samples with the highest normalised
    correlation over pairs of visible samples, all leads pooled. What a predictor that reads only
    the hidden sample's own lead can reach by inferring the rhythm."""
    b, _, t = seen.shape
    lags = np.arange(shortest, longest + 1)
    score = np.empty((b, len(lags)))
    for j, lag in enumerate(lags):
        a, c = seen[:, :, :-lag], seen[:, :, lag:]  # zero where hidden, so only visible pairs count
        score[:, j] = (a * c).sum((1, 2)) / np.sqrt((a * a).sum((1, 2)) * (c * c).sum((1, 2)) + 1e-12)
    period = lags[score.argmax(1)]
    predicted = np.broadcast_to(mean, seen.shape).copy()
    found = np.zeros(seen.shape, bool)
    steps = np.arange(t)
    for k in (1, 2):
        total, count = np.zeros(seen.shape), np.zeros(seen.shape)
        for sign in (-1, 1):
            source = steps[None, :] + sign * k * period[:, None]  # (B, T)
            inside = (source >= 0) & (source < t)
            index = np.clip(source, 0, t - 1)[:, None, :].repeat(seen.shape[1], 1)
            usable = np.take_along_axis(visible, index, 2) & inside[:, None, :]
            total += np.where(usable, np.take_along_axis(seen, index, 2), 0.0)
            count += usable
        new = (count > 0) & ~found
        predicted[new] = total[new] / count[new]
        found |= new
    return predicted


def oracles(dataset: str, patches_s: list[float] | None = None, records: int = 400) -> list[dict]:
    """:func:`oracle_ratios` on the first ``records`` pretraining records of ``dataset`` (the cpu
    preset's 100 Hz, first 5 s), at two mask ratios and each patch length of ``patches_s``
    (seconds; the cpu preset's patch by default)."""
    from benchmark.data.contract import default_cache_root
    from benchmark.run.build import build_dataset
    from benchmark.run.presets import get_preset

    preset = get_preset("cpu")
    name, overrides = (
        ("synthetic", {}) if dataset == "synthetic" else ("ptbxl", {"ptbxl": {"root": str(SHARED / "ptbxl1000")}})
    )
    plugin = build_dataset(name, preset, overrides)
    arrays = plugin.load(preset.input.fs, plugin.label_sets[0], default_cache_root(), False)
    index = arrays.splits["pretrain"][:records]
    window = preset.input.window
    signals = np.asarray(arrays.signals[index][:, :, :window], dtype=np.float64)
    lead_mask = np.asarray(arrays.lead_mask[index], dtype=bool)
    return [
        {
            "data": "synthetic" if dataset == "synthetic" else "PTB-XL 1-999 (the pool's PTB-XL part)",
            "patch (s)": patch_s,
            "mask ratio": ratio,
        }
        | oracle_ratios(signals, lead_mask, round(patch_s * preset.input.fs), ratio)
        for patch_s in patches_s or [preset.model.patch_s]
        for ratio in (0.75, 0.5)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run", help="run the settings (resumable)")
    go.add_argument("--dataset", choices=list(DATASETS), default="synthetic")
    go.add_argument("--only", action="append", default=[], help="one setting by name (repeatable)")
    go.add_argument("--device", default="auto", help="auto (default), cpu, cuda, ...")
    go.add_argument("--seeds", help="as run's --seeds (default: run's, 3)")
    go.add_argument("--methods", help="only these of each setting's methods (comma-separated, as listed)")
    sub.add_parser("table", help="the markdown table of every finished setting")
    figure = sub.add_parser("curves", help="loss / trivial curves of the longer runs as a PNG")
    figure.add_argument("--dataset", choices=list(DATASETS), default="synthetic")
    figure.add_argument("--out", type=Path, required=True, help="the PNG to write")
    figure.add_argument(
        "--figure", choices=list(FIGURES), default="budgets", help="which settings' runs to draw (default: budgets)"
    )
    informed = sub.add_parser("oracles", help="the informed non-learned predictors' ratios")
    informed.add_argument("--dataset", choices=list(DATASETS), default="synthetic")
    informed.add_argument(
        "--patch-s",
        type=float,
        action="append",
        help="a patch length in seconds (repeatable; default: the cpu preset's)",
    )
    args = parser.parse_args()
    if args.command == "run":
        run(args.dataset, args.only, args.device, args.seeds, args.methods)
    elif args.command == "table":
        print(table())
    elif args.command == "curves":
        written = curves(args.dataset, args.out, args.figure)
        print(written or f"no finished run of {FIGURES[args.figure][1]} on {args.dataset} in {RUNS}")
    else:
        from tabulate import tabulate

        print(tabulate(oracles(args.dataset, args.patch_s), headers="keys", tablefmt="github", floatfmt=".3f"))


if __name__ == "__main__":  # the data preparation spawns worker processes that import this file
    main()
