"""Loss-curve plots of training histories."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SKIP = {"step", "elapsed_s", "lr", "grad_norm"}


def plot_loss_curves(history: list[dict], path: str | Path, title: str) -> Path:
    path = Path(path)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    steps = [h["step"] for h in history]
    for key in history[0] if history else []:
        if key not in SKIP:
            ax.plot(steps, [h[key] for h in history], label=key, linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (per image, batch mean)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if history:
        ax.legend()
    return save_figure(fig, path)


def save_figure(fig, path: str | Path) -> Path:
    """Lay the figure out, write it as a PNG (making its folder) and free it."""
    path = Path(path)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
