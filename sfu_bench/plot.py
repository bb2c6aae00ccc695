"""``--plot PATH``: server CPU against forwarded packets/s, as a PNG (matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot"]


def plot(results: Sequence[dict[str, Any]], fit: dict[str, Any] | None, path: Path) -> None:
    """Write the plot; raises ImportError without matplotlib (``pip install 'sfu[bench]'``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5), dpi=120)
    styles = {
        "fanout": ("tab:blue", "o"),
        "room": ("tab:green", "s"),
        "voice": ("tab:purple", "^"),
        "capacity": ("tab:gray", "D"),
        "baseline-fanout": ("tab:red", "x"),
    }
    for family, (color, marker) in styles.items():
        points = [
            r
            for r in results
            if r.get("family") == family
            and not r.get("error")
            and r.get("packets_out_per_s") is not None
            and r.get("server_cpu_percent") is not None
        ]
        if not points:
            continue
        label = "baseline: aiortc MediaRelay" if family == "baseline-fanout" else family
        axes.scatter(
            [r["packets_out_per_s"] for r in points],
            [r["server_cpu_percent"] for r in points],
            color=color,
            marker=marker,
            label=label,
        )
        for r in points:
            axes.annotate(
                r["name"].replace("baseline-", "b-"),
                (r["packets_out_per_s"], r["server_cpu_percent"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
            )
    if fit is not None:
        xs = [p["packets_out_per_s"] for p in fit["points"]]
        low, high = 0.0, max(xs) * 1.05
        slope = fit["marginal_us_per_packet"] / 1e6 * 100  # percent per packet/s
        axes.plot(
            [low, high],
            [
                fit["intercept_cpu_percent"] + slope * low,
                fit["intercept_cpu_percent"] + slope * high,
            ],
            color="tab:blue",
            linestyle="--",
            linewidth=1,
            label=f"fanout fit: {fit['marginal_us_per_packet']:.1f} µs/packet",
        )
    axes.set_xlabel("forwarded RTP packets/s (server /health)")
    axes.set_ylabel("server CPU % (one core = 100)")
    axes.set_title("sfu bench: server CPU against forwarded packets")
    axes.grid(True, alpha=0.3)
    axes.set_xlim(left=0)
    axes.set_ylim(bottom=0)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
