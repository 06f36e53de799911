"""Writes the example encoder's weights in two forms beside this file: my_encoder_state.pt (a
state_dict, read through my_encoder.py's build()) and my_encoder.pt (the same weights traced to
TorchScript). Stands in for an encoder you pretrained elsewhere; ``--seed`` gives other weights."""

import argparse
from pathlib import Path

import torch
from my_encoder import SPEC, WEIGHTS, build

here = Path(__file__).resolve().parent
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")
seed = parser.parse_args().seed

torch.manual_seed(seed)
encoder = build().eval()
torch.save(encoder.state_dict(), here / WEIGHTS)
example = torch.zeros(2, len(SPEC.leads), SPEC.window)
torch.jit.save(torch.jit.trace(encoder, example), here / "my_encoder.pt")
print(f"wrote {here / WEIGHTS} and {here / 'my_encoder.pt'} (seed {seed})")
