#!/usr/bin/env python3
"""The book's ch05 run in PyTorch (../shared/bench/torch_ch5.py, unchanged) on a CUDA GPU with a
chosen seed: torch.manual_seed is patched to that seed and the model and batches are moved to the
GPU. Used to compare the spread of end-of-run losses over seeds with `scratchgpt train --device
cuda --seed S` (docs/training.md).

Usage: TORCH_CH5_DIR=<folder holding torch_ch5.py> python3 torch_ch5_gpu.py SEED
Prints torch_ch5's JSON lines (the last "eval" line holds the epoch-10 losses).
"""
import os, sys, torch
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("TORCH_CH5_DIR", os.path.join(HERE, "..", "..", "..", "shared", "bench")))
seed = int(sys.argv[1])
sys.argv = ["torch_ch5.py", "--no-sample", "--data-dir", os.path.join(HERE, "..", "..", "data")]
import torch_ch5 as m
real_seed = torch.manual_seed
torch.manual_seed = lambda s: real_seed(seed)
dev = "cuda"
init = m.GPTModel.__init__
def gpu_init(self, cfg):
    init(self, cfg)
    self.to(dev)
m.GPTModel.__init__ = gpu_init
fwd = m.GPTModel.forward
m.GPTModel.forward = lambda self, idx: fwd(self, idx.to(dev))
loss = m.calc_loss_batch
m.calc_loss_batch = lambda i, t, model: loss(i, t.to(dev), model)
m.main()
