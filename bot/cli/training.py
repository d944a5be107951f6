"""`expertbot retrain` and `expertbot adapters ...`: the terminology adapter from the command line."""

from __future__ import annotations

import json

import click

from bot import operations

from .common import services


def _progress(p: operations.Progress) -> None:
    if p.stage == "train" and p.total:
        loss = f" loss {p.loss:.3f}" if p.loss is not None else ""
        eta = f" eta {p.eta_s:.0f}s" if p.eta_s is not None else ""
        click.echo(f"step {p.done}/{p.total}{loss}{eta}", err=True)
    elif p.message:
        click.echo(f"{p.stage}: {p.message}", err=True)


@click.command()
@click.option(
    "--glossary", type=click.Path(dir_okay=False, exists=True), help="Glossary (.jsonl, .csv or .md)."
)
@click.option("--epochs", type=click.IntRange(1, 100), help="Training epochs (default 3).")
@click.option("--max-steps", type=click.IntRange(1), help="Stop after this many optimizer steps.")
@click.option("--qlora/--no-qlora", default=None, help="4-bit NF4 base (QLoRA). Default: on CUDA only.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def retrain(ctx, glossary, epochs, max_steps, qlora, as_json):
    """Train a terminology adapter, compare it with the base, and promote it if it passes the gate."""
    from pathlib import Path

    # As /retrain-adapter does, less the QA eval after it (`expertbot eval` is the command for that).
    result = operations.retrain(
        services(ctx),
        progress=_progress,
        glossary=Path(glossary) if glossary else None,
        epochs=epochs,
        max_steps=max_steps,
        qlora=qlora,
    ).result
    if as_json:
        click.echo(
            json.dumps(
                {
                    "version": result.version,
                    "promoted": result.promoted,
                    "reasons": result.verdict.reasons,
                    "metrics": result.metrics,
                    "train": result.train,
                    # Training examples made from approved corrections (0 when none were used).
                    "corrections": result.dataset.get("corrections", 0),
                    "loss_plot": str(result.loss_plot) if result.loss_plot else None,
                },
                indent=2,
                default=str,
            )
        )
        return
    for line in result.summary_lines():
        click.echo(line)
    if result.loss_plot:
        click.echo(f"loss curve: {result.loss_plot}")


@click.group()
def adapters():
    """List, inspect, promote and roll back adapter versions."""


def _show(info, current: str | None) -> str:
    acc = info.metrics.get("adapter", {}).get("accuracy")
    mark = "*" if info.name == current else " "
    acc_text = f"accuracy {acc:.1%}" if isinstance(acc, float) else "accuracy ?"
    gate = "pass" if info.gate.get("promote") else "fail"
    return f"{mark} {info.name:<16} {info.created:<26} {acc_text}  gate: {gate}"


@adapters.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_(ctx, as_json):
    """All versions; * marks the current one."""
    registry = services(ctx).registry
    current = registry.current()
    items = registry.list()
    if as_json:
        click.echo(
            json.dumps(
                {"current": current.name if current else None, "adapters": [i.to_dict() for i in items]},
                indent=2,
                default=str,
            )
        )
        return
    if not items:
        click.echo("no adapters yet: run `expertbot retrain`")
    for info in items:
        click.echo(_show(info, current.name if current else None))


@adapters.command()
@click.argument("version")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx, version, as_json):
    """Everything stored with VERSION."""
    info = services(ctx).registry.get(version)
    click.echo(json.dumps(info.to_dict(), indent=2, default=str) if as_json else _describe(info))


def _describe(info) -> str:
    lines = [
        f"{info.name}  created {info.created}",
        f"  base model: {info.base_model} ({info.base_fingerprint})",
        f"  dataset: {info.dataset_hash}",
        f"  path: {info.path}",
    ]
    for who, m in info.metrics.items():
        if isinstance(m, dict) and "accuracy" in m:
            lines.append(
                f"  {who}: accuracy {m['accuracy']:.1%}, perplexity {m.get('perplexity', float('nan')):.2f}"
            )
    lines += [f"  gate: {'pass' if info.gate.get('promote') else 'fail'}"] + [
        f"    - {r}" for r in info.gate.get("reasons", [])
    ]
    return "\n".join(lines)


@adapters.command()
@click.argument("version")
@click.option("--force", is_flag=True, help="promote a version that failed its gate")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def promote(ctx, version, force, as_json):
    """Make VERSION current (running bots pick it up on the next question). A version that failed its
    promotion gate needs --force."""
    try:
        change = operations.promote(services(ctx).registry, version, force=force)
    except operations.GateRefusedError as refused:
        raise click.ClickException(f"{refused}. Promote it anyway with --force.") from None
    click.echo(json.dumps({"current": change.name}) if as_json else f"current adapter: {change.name}")


@adapters.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def rollback(ctx, as_json):
    """Go back to the version before the current one."""
    name = operations.rollback(services(ctx).registry).name
    click.echo(
        json.dumps({"current": name}) if as_json else f"current adapter: {name or 'none (base model)'}"
    )
