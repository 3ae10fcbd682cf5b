"""Networks side by side on one patch: parameters, FLOPs and CPU forward time.

Run: .venv/bin/python Testing/benchmarks/bench_nets.py [--patch 64] [--repeats 3]
Common input: 2 channels (CT, PET), 2 classes, a 3D patch P×P×P (2D nets see the same
volume as P slices of P×P). 3D U-Nets share one 5-stage plan (32–320 features, strides
1,2,2,2,2) and a plain nnU-Net ResEnc U-Net of that plan is the reference. FLOPs: torch's
FlopCounterMode (convolutions, matmuls, attention) plus the selective scan, which is not a
matmul: 9 FLOPs per (token, inner channel, state) for discretisation, update and readout.
"""

from __future__ import annotations

import argparse
import time

import torch
from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from attumamba.nets import AttUMamba, LightMUNet, MambaAHNet, MPUNet, UMambaBot, UMambaEnc
from attumamba.ssm import Mamba, scan_backend

SCAN_FLOPS_PER_ELEMENT = 9


def plan(patch: int) -> dict:
    return dict(
        n_stages=5, features_per_stage=[32, 64, 128, 256, 320], conv_op=nn.Conv3d, kernel_sizes=[[3, 3, 3]] * 5,
        strides=[[1, 1, 1]] + [[2, 2, 2]] * 4, n_conv_per_stage_decoder=[2] * 4, conv_bias=True,
        norm_op=nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU,
        nonlin_kwargs={"inplace": True},
    )


def networks(patch: int):
    p = plan(patch)
    yield "nnU-Net ResEnc U-Net, ResEnc-M blocks (reference)", ResidualEncoderUNet(2, num_classes=2, n_blocks_per_stage=[1, 3, 4, 6, 6], **p), 3
    yield "nnU-Net ResEnc U-Net, U-Mamba's blocks", ResidualEncoderUNet(2, num_classes=2, n_blocks_per_stage=[2, 2, 2, 1, 1], **p), 3
    yield "U-Mamba Bot", UMambaBot(2, num_classes=2, n_conv_per_stage=[2] * 5, **p), 3
    yield "U-Mamba Enc", UMambaEnc(2, num_classes=2, n_conv_per_stage=[2] * 5, input_size=[patch] * 3, **p), 3
    yield "Att-UMamba (default)", AttUMamba(2, num_classes=2, n_conv_per_stage=[2] * 5, **p), 3
    yield "LightM-UNet (released defaults)", LightMUNet(2, 2), 3
    yield "LightM-UNet (f=24, [1,2,2,2])", LightMUNet(2, 2, init_filters=24, blocks_down=(1, 2, 2, 2)), 3
    yield "MPU-Net", MPUNet(2, 2), 3
    yield "Mamba-AHNet (+reconstruction)", MambaAHNet(2, 2, reconstruction=True), 2


def scan_flops(model: nn.Module, x: torch.Tensor) -> int:
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        batch, length, _ = inputs[0].shape
        total += SCAN_FLOPS_PER_ELEMENT * batch * length * module.d_inner * module.d_state

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, Mamba)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    volume = torch.randn(1, 2, args.patch, args.patch, args.patch)
    slices = volume[0].permute(1, 0, 2, 3).contiguous()  # (P, 2, P, P)
    rows = []
    for name, model, dims in networks(args.patch):
        model.eval()
        x = volume if dims == 3 else slices
        params = sum(p.numel() for p in model.parameters())
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
        flops = counter.get_total_flops() + scan_flops(model, x)
        with torch.no_grad():
            model(x)  # warm-up (and the scan kernel's first build)
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - start)
        rows.append((name, params, flops, min(times)))
    reference = rows[0]
    print(f"patch {args.patch}^3, 2 channels, 2 classes; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"scan backend: {scan_backend('cpu')}\n")
    print("| network | parameters | GFLOPs (forward) | CPU forward (s) | time vs ResEnc |")
    print("|---|---:|---:|---:|---:|")
    for name, params, flops, seconds in rows:
        print(f"| {name} | {params:,} | {flops / 1e9:.1f} | {seconds:.2f} | {seconds / reference[3]:.2f}× |")


if __name__ == "__main__":
    main()
