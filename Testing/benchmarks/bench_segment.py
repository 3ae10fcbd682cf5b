"""Whole-body segmentation time on this machine: in process, through the HTTP service, and with a
plain ResEnc U-Net of the same size (Mamba's share), side by side.

    python Testing/benchmarks/bench_segment.py [--baseline PACKAGE] [--device cpu] [--threads N]

A full-profile synthetic study (PET 4 mm, CT about 512×512, whole body) is generated once
(seed 4242, never used in training). Each row runs in a fresh process so its peak RSS is its
own. Targets (issue 6): ≤ 60 s end to end on 2 CPU cores, peak RSS ≤ 4 GB, HTTP overhead ≤ 10 %.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUDY_SEED = 4242


def make_study(folder: Path) -> tuple[Path, Path]:
    from attumamba.synth import synthesize

    if not (folder / "synth_0000" / "SUV.nii.gz").is_file():
        synthesize(folder, 1, seed=STUDY_SEED, profile="full", fmt="nifti")
    study = folder / "synth_0000"
    return study / "CT.nii.gz", study / "SUV.nii.gz"


def resenc_twin(package_root: Path, folder: Path) -> Path:
    """A plain nnU-Net ResEnc U-Net package with the default model's plan, widths and patch (random
    weights: it only times the network, so the difference to Att-UMamba is Mamba's share)."""
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from attumamba.inference import open_model
    from attumamba.nets import plans_with_network

    package = open_model(package_root)
    configuration = package.plans["configurations"][package.configuration]
    features = configuration["architecture"]["arch_kwargs"]["features_per_stage"]
    plans = plans_with_network(package.plans, "resenc", package.configuration, features=features,
                               patch_size=configuration["patch_size"])
    manager = PlansManager(plans).get_configuration(package.configuration)
    network = get_network_from_plans(manager.network_arch_class_name, manager.network_arch_init_kwargs,
                                     manager.network_arch_init_kwargs_req_import, 2, 2, deep_supervision=False)
    (folder / "fold_all").mkdir(parents=True, exist_ok=True)
    torch.save({"network_weights": network.state_dict(), "inference_allowed_mirroring_axes": (0, 1, 2)},
               folder / "fold_all" / "checkpoint_final.pth")
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(package.dataset_json))
    (folder / "model.json").write_text(json.dumps({**package.manifest, "name": "resenc-twin", "default": False,
                                                   "architecture": "resenc", "display_name": "ResEnc twin (timing)"}))
    return folder


def parameter_count(model: str | None) -> int:
    import torch

    from attumamba.inference import resolve_model

    weights = torch.load(resolve_model(model).checkpoints[0], weights_only=True)["network_weights"]
    return sum(v.numel() for k, v in weights.items() if not k.startswith("decoder.encoder."))


def in_process(model: str | None, ct: Path, pet: Path, device: str) -> dict:
    """One end-to-end run in this process (called in a child): stage times and peak RSS."""
    from attumamba.inference import Segmenter, load_study, resolve_model, run_study

    started = time.perf_counter()
    segmenter = Segmenter(resolve_model(model), device)
    model_load = time.perf_counter() - started
    started = time.perf_counter()
    ct_image, pet_image = load_study(ct, pet)
    loading = time.perf_counter() - started
    result = run_study(segmenter, ct_image, pet_image)
    timings = {"model": model_load, "loading": loading, **result.timings}
    return {"timings": timings, "total": sum(timings.values()), "lesions": result.report["totals"]["n_lesions"],
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2,
            "ct_size": list(ct_image.GetSize()), "pet_size": list(pet_image.GetSize())}


def through_http(model: str | None, ct: Path, pet: Path, device: str) -> dict:
    """The same study through ``attumamba-seg serve`` on loopback: upload, queue, segment, download."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token_file = Path(tempfile.mkdtemp()) / "token"
    server = subprocess.Popen([sys.executable, "-m", "attumamba.cli", "serve", "--port", str(port), "--device", device,
                               "--token-file", str(token_file)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        while True:
            try:
                httpx.get(f"{base}/v1/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
        with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
            started = time.perf_counter()
            with ct.open("rb") as ct_file, pet.open("rb") as pet_file:
                study = client.post("/v1/studies", files={"ct": (ct.name, ct_file), "pet": (pet.name, pet_file)}).json()
            uploaded = time.perf_counter()
            job = client.post("/v1/jobs", json={"study_id": study["study_id"], "model": model}).json()
            while (status := client.get(f"/v1/jobs/{job['job_id']}").json())["state"] not in ("done", "failed"):
                time.sleep(0.2)
            ran = time.perf_counter()
            labelmap = client.get(f"/v1/jobs/{job['job_id']}/labelmap").content
            report = client.get(f"/v1/jobs/{job['job_id']}/lesions").json()
            done = time.perf_counter()
        server_rss = _rss_of(server.pid)
        inside = sum(status["timings"].values())
        return {"total": done - started, "upload": uploaded - started, "job": ran - uploaded,
                "download": done - ran, "inside_job": inside, "labelmap_mb": len(labelmap) / 1e6,
                "lesions": report["totals"]["n_lesions"], "state": status["state"], "server_rss_gb": server_rss}
    finally:
        server.terminate()
        server.wait(30)


def _rss_of(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    peak = next(line for line in status.splitlines() if line.startswith("VmHWM"))
    return int(peak.split()[1]) / 1024 ** 2


def child(kind: str, model: str | None, ct: Path, pet: Path, device: str, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_segment as b; "
            f"import torch; torch.set_num_threads({threads}); "
            f"print('RESULT', json.dumps(b.{kind}({model!r}, b.Path({str(ct)!r}), b.Path({str(pet)!r}), {device!r})))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(next(line for line in output.splitlines() if line.startswith("RESULT"))[7:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model name or package (default: the default model)")
    parser.add_argument("--baseline", default="twin",
                        help="package of a plain U-Net of the same size; 'twin' builds a ResEnc twin of the model; "
                             "'none' skips it")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "attumamba-bench-study")
    args = parser.parse_args()
    ct, pet = make_study(args.cache)
    if args.baseline == "twin":
        from attumamba.inference import resolve_model

        args.baseline = str(resenc_twin(resolve_model(args.model).root, Path(tempfile.mkdtemp()) / "resenc-twin"))
    elif args.baseline == "none":
        args.baseline = None
    ours = child("in_process", args.model, ct, pet, args.device, args.threads)
    http = child("through_http", args.model, ct, pet, args.device, args.threads)
    rows = [("default model, in process", ours)]
    if args.baseline:
        rows.append(("ResEnc baseline, in process", child("in_process", args.baseline, ct, pet, args.device, args.threads)))
    stages = ("model", "loading", "preprocessing", "network", "resampling", "lesion_analysis")
    print(f"\nstudy: CT {ours['ct_size']}, PET {ours['pet_size']}; device {args.device}, {args.threads} threads")
    print("| run | " + " | ".join(stages) + " | total s | peak RSS GB | lesions |")
    print("|---" * (len(stages) + 4) + "|")
    for name, row in rows:
        print(f"| {name} | " + " | ".join(f"{row['timings'][s]:.1f}" for s in stages)
              + f" | {row['total']:.1f} | {row['peak_rss_gb']:.2f} | {row['lesions']} |")
    if args.baseline:
        ratio = ours["timings"]["network"] / rows[1][1]["timings"]["network"]
        print(f"\nnetwork time, Att-UMamba / ResEnc: {ratio:.2f}x (parameters {parameter_count(args.model):,} vs "
              f"{parameter_count(args.baseline):,})")
    overhead = http["total"] - ours["total"]
    print(f"\nHTTP: total {http['total']:.1f} s (upload {http['upload']:.1f}, job {http['job']:.1f}, download "
          f"{http['download']:.1f}); overhead vs in process {overhead:.1f} s = {100 * overhead / http['total']:.1f} % "
          f"of the total; server peak RSS {http['server_rss_gb']:.2f} GB; labelmap {http['labelmap_mb']:.1f} MB")


if __name__ == "__main__":
    main()
