"""`propagate inits`: every initializer with its formula and its weight variance for given fans."""
import click

from propagate import inits as I


@click.command("inits")
@click.option("--fan-in", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--fan-out", type=click.IntRange(min=1), default=512, show_default=True)
def inits_cmd(fan_in, fan_out):
    """List the registered initializers, their formulas and Var(W) at the given fans."""
    rows = []
    for init in I.all_inits():
        var = init.weight_var(fan_in, fan_out)
        var_text = "data-dependent" if var != var else f"{var:.6g}"
        sw2 = "" if var != var else f"{fan_in * var:.4g}"
        aliases = f" (aliases: {', '.join(init.aliases)})" if init.aliases else ""
        rows.append((init.name + aliases, init.formula, var_text, sw2))
    rows.append(("gaussian:SW2[:SB2]", "N(0, SW2/fan_in), bias N(0, SB2)", f"SW2/{fan_in}", "SW2"))
    widths = [max(len(r[i]) for r in rows + [("initializer", "formula", "Var(W)", "σ_w²")]) for i in range(4)]
    head = ("initializer", "formula", "Var(W)", "σ_w²=fan_in·Var")
    click.echo(f"fan_in={fan_in}, fan_out={fan_out}; ReLU keeps the forward signal when σ_w² = 2")
    click.echo("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)))
