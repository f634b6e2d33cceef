"""The import command: a user's own recurrent model, from its state dict."""
from __future__ import annotations

import re
from pathlib import Path

import click

from .common import domain_errors, out_option


def _module_syntax(ctx, param, value):
    if value is not None and not re.fullmatch(r"[\w.]+:[\w.]+", value):
        raise click.BadParameter(f"{value!r}: give MODULE:FACTORY, e.g. mypkg.models:make_model")
    return value


@click.command("import")
@click.argument("name")
@click.option("--weights", required=True, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="State dict: torch.save(model.state_dict()) (read with weights_only=True) "
                   "or a .safetensors file.")
@click.option("--task", required=True, type=click.Choice(["regression", "classification"]),
              help="classification: the outputs are logits, argmax is the label.")
@click.option("--nonlinearity", type=click.Choice(["tanh", "relu"]),
              help="A plain RNN's nonlinearity (not in the weights). Default: tanh, assumed.")
@click.option("--module", "module", metavar="MODULE:FACTORY", callback=_module_syntax,
              help="Your own code (importable from PYTHONPATH or the current folder): "
                   "FACTORY() returns your nn.Module; it gets the weights, its forward is read "
                   "as a chain of layers (torch.fx), and it must compute what that chain "
                   "computes, or nothing is imported.")
@out_option
@domain_errors
def import_model(name, weights, task, nonlinearity, module, out):
    """Import your own RNN/GRU/LSTM model as NAME under --out.

    Reads one recurrent layer stack (nn.RNN/GRU/LSTM, any layers, bidirectional or not,
    batch_first) or one cell (nn.RNNCell/GRUCell/LSTMCell, stepped over the sequence)
    and one nn.Linear head on the last step's output, whatever the attribute names, and
    writes DIR/NAME/weights.safetensors and config.json. NAME then works with export,
    verify, bench, predict and publish like a built-in model. With --module, the chain of
    layers (embeddings, linear, norms, activations, several recurrent layers, readouts,
    a packed forward) is read from your forward with torch.fx (README: Bring your own
    model). Refused with one line, nothing written: an unreadable or pickled file, an LSTM
    with proj_size, no head or two candidate stacks without --module, inconsistent
    shapes, NaN/Inf weights, a taken or invalid NAME, what a chain cannot express (named,
    with its line in your source).

    \b
    Example:
      python -c "import torch; torch.save(my_model.state_dict(), 'lstm.pt')"
      python -m pipeline import mylstm --weights lstm.pt --task classification
      python -m pipeline export --model mylstm && python -m pipeline verify --model mylstm
      python -m pipeline import tagger --weights tagger.pt --task classification \
          --module tagger:LSTMTagger
    """
    from ..families import family
    from ..importing import ImportConfig, main

    result = main(ImportConfig(name, weights, task, nonlinearity, module, out))
    spec, fam = result["spec"], family(result["spec"])
    if spec.layers:                      # a chain read from the forward (--module)
        from ..layers.chain import describe_chain
        click.echo(f"{name}: {describe_chain(spec)} ({spec.task})")
    shape = (f"{spec.num_layers} layer{'s' if spec.num_layers > 1 else ''}"
             f"{', bidirectional' if spec.bidirectional else ''}" if spec.form == "stack"
             else "stepped in a loop")
    if not spec.layers:
        click.echo(f"{name}: {fam.cell_name if spec.form == 'cell_loop' else fam.stack_name} "
                   f"({spec.cell}), {shape}; input {spec.input_size}, hidden "
                   f"{spec.hidden_size}, head {spec.hidden_size * spec.directions} -> "
                   f"{spec.output_size} ({spec.task})")
    if result["checked_shapes"]:
        click.echo(f"  {module}: same outputs at {result['checked_shapes']} shapes")
    for note in result["notes"]:
        click.echo(f"  note: {note}")
    click.echo(f"-> {result['folder']}/{{weights.safetensors,config.json}}; next: "
               f"python -m pipeline export --model {name} --out {out}")
