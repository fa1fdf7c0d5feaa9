"""Ratios against the targets, the printed table and the chart of a benchmark run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The targets: (name, limit, which models they are judged on).
COLD_VS_NAIVE = 0.5
COLD_VS_FLOOR = 1.3
WARM_12MP_VS_FORWARD = 1.3
MODEL_ONLY_SHARE = 0.05


def _target(
    name: str, model: str, value: float, limit: float, judged: bool = True
) -> dict[str, Any]:
    return {
        "target": name,
        "model": model,
        "value": round(value, 5),
        "limit": limit,
        "met": value <= limit,
        "judged": judged,
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target ratio of the run; `judged` False where the target does not apply.

    Cold-start targets are stated for this stack's torch handler ("ours") and, where
    the run has one, for the same model served by ONNX Runtime ("onnx").
    """
    out: list[dict[str, Any]] = []
    first = float(results["release_bytes"]["first_release"])
    for model, figures in results["models"].items():
        naive, floors = figures["naive"], figures["floors"]
        for label in [k for k in ("ours", "onnx") if k in figures]:
            cold = figures[label]["cold"]["total"]
            name = model if label == "ours" else f"{model} (onnx)"
            out.append(
                _target("cold start / naive", name, cold / naive["cold"]["total"], COLD_VS_NAIVE)
            )
            out.append(_target("cold start / floor", name, cold / floors["cold"], COLD_VS_FLOOR))
            # A 0.5 ms forward pass (the digits net) cannot hide any decode of a 12 MP
            # JPEG; the target is about ResNet-152, whose forward pass is the real work.
            out.append(
                _target(
                    "warm 12 MP JPEG / bare forward",
                    name,
                    figures[label]["warm"]["jpeg_12mp"]["p50"] / floors["forward"],
                    WARM_12MP_VS_FORWARD,
                    judged=model == "resnet152",
                )
            )
        moved = float(results["release_bytes"]["model_only"][model])
        out.append(
            _target(
                "model-only release bytes / first release",
                model,
                moved / first,
                MODEL_ONLY_SHARE,
                judged=model == "digits",
            )
        )
    return out


def _labels(figures: dict[str, Any]) -> list[str]:
    return [k for k in ("ours", "onnx", "naive") if k in figures]


def _mb(value: float) -> str:
    return f"{value / 1e6:,.1f} MB"


def table(results: dict[str, Any]) -> str:
    """Markdown tables: cold-start breakdown, warm latency, throughput, memory, targets."""
    lines = [
        f"Benchmark {results['date']} on {results['machine']['cpu']} "
        f"({results['machine']['cores']} cores), {results['settings']['memory_mb']} MB function, "
        f"medians of {results['settings']['repeats']} cold starts",
        "",
        "| model | handler | process | stamp | imports | model load | 1st inference | cold total |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for model, figures in results["models"].items():
        for label in _labels(figures):
            c = figures[label]["cold"]
            lines.append(
                f"| {model} | {label} | {c['process_start']:.0f} | {c['stamp_check']:.0f} | "
                f"{c['imports']:.0f} | {c['model_load']:.0f} | {c['first_inference']:.0f} | "
                f"**{c['total']:.0f} ms** |"
            )
        f = figures["floors"]
        lines.append(
            f"| {model} | floor | {f['process_start']:.0f} | - | {f['import_torch']:.0f} | - | "
            f"{f['first_forward']:.0f} | {f['cold']:.0f} ms |"
        )
    lines += [
        "",
        "| model | handler | 224 px PNG p50/p95 | 1 MP JPEG p50/p95 | 12 MP JPEG p50/p95 | "
        "req/s c=1 | req/s c=2 | peak RSS |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for model, figures in results["models"].items():
        for label in _labels(figures):
            h = figures[label]
            w = h["warm"]
            cells = " | ".join(
                f"{w[k]['p50']:.0f}/{w[k]['p95']:.0f} ms"
                for k in ("png_224px", "jpeg_1mp", "jpeg_12mp")
            )
            lines.append(
                f"| {model} | {label} | {cells} | {h['throughput_rps']['c1']:.1f} | "
                f"{h['throughput_rps']['c2']:.1f} | {h['peak_rss_mb']:.0f} MB |"
            )
        f = figures["floors"]
        lines.append(
            f"| {model} | bare forward ({f['best_settings'].get('memory_format')}, "
            f"{f['best_settings'].get('threads')} threads) | {f['forward']:.0f} ms | | | | | |"
        )
    rb = results["release_bytes"]
    lib = results.get("lib", {})
    lines += [
        "",
        f"First release bundle {_mb(rb['first_release'])}; model-only releases: "
        + ", ".join(f"{m} {_mb(v)}" for m, v in rb["model_only"].items())
        + "".join(
            f"; lib/ for {k}: {_mb(v)} in {lib['files'][k]:,} files"
            for k, v in lib.get("bytes", {}).items()
        ),
        "",
        "| target | model | ratio | limit | |",
        "|---|---|---:|---:|---|",
    ]
    for t in results["targets"]:
        verdict = ("met" if t["met"] else "MISSED") if t["judged"] else "n/a (see note)"
        lines.append(
            f"| {t['target']} | {t['model']} | {t['value']:.3f} | {t['limit']} | {verdict} |"
        )
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    """Stacked cold-start bars (ours, naive, floor per model) and warm p50 per payload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(results["models"])
    fig, (cold_ax, warm_ax) = plt.subplots(1, 2, figsize=(12, 4.8))
    steps = ("process_start", "stamp_check", "imports", "model_load", "first_inference")
    colours = ("#999999", "#e8a33d", "#4c72b0", "#55a868", "#c44e52")
    labels: list[str] = []
    bottoms: list[list[float]] = []
    for model in models:
        figures = results["models"][model]
        f = figures["floors"]
        for label in _labels(figures):
            labels.append(f"{model}\n{label}")
            bottoms.append([figures[label]["cold"][s] / 1000 for s in steps])
        labels.append(f"{model}\nfloor")
        bottoms.append(
            [f["process_start"] / 1000, 0, f["import_torch"] / 1000, 0, f["first_forward"] / 1000]
        )
    positions = range(len(labels))
    base = [0.0] * len(labels)
    for index, step in enumerate(steps):
        heights = [b[index] for b in bottoms]
        cold_ax.bar(
            positions, heights, bottom=base, color=colours[index], label=step.replace("_", " ")
        )
        base = [x + y for x, y in zip(base, heights, strict=True)]
    cold_ax.set_xticks(list(positions), labels, fontsize=8)
    cold_ax.set_ylabel("seconds")
    cold_ax.set_title("Cold start to first prediction")
    cold_ax.legend(fontsize=8)

    names = ("png_224px", "jpeg_1mp", "jpeg_12mp")
    handlers = _labels(results["models"][models[0]])
    width = 0.8 / (len(handlers) * len(models))
    for m_index, model in enumerate(models):
        for h_index, label in enumerate(handlers):
            offset = (m_index * len(handlers) + h_index) * width
            values = [results["models"][model][label]["warm"][n]["p50"] for n in names]
            warm_ax.bar(
                [i + offset for i in range(len(names))], values, width, label=f"{model} {label}"
            )
    warm_ax.set_xticks(
        [i + 0.4 - width / 2 for i in range(len(names))], ["224 px PNG", "1 MP JPEG", "12 MP JPEG"]
    )
    warm_ax.set_yscale("log")
    warm_ax.set_ylabel("ms (p50, log scale)")
    warm_ax.set_title("Warm latency")
    warm_ax.legend(fontsize=8)
    fig.suptitle(
        f"{results['date']}: {results['machine']['cpu']}, "
        f"{results['settings']['memory_mb']} MB function"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
