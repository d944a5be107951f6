"""The loss-curve PNG stored with each adapter (and posted by the Slack job)."""

from __future__ import annotations

from pathlib import Path


def plot_loss(log_history: list[dict], path: Path, title: str = "training loss") -> Path | None:
    """Train loss per step and validation loss per evaluation; None when there is nothing to draw."""
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    val = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h and "step" in h]
    if not train and not val:
        return None
    # Imported here, and the Agg canvas used directly rather than pyplot: no display needed on a
    # server, no global backend switched under other code, no import cost for the bot.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    if train:
        ax.plot(*zip(*train, strict=True), label="train", linewidth=1)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
