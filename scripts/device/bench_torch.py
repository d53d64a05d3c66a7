#!/usr/bin/env python3
"""The PyTorch reference for bench/flux-gpu.ts, on the same GPU in the same device run: one FLUX.1
transformer forward with random bf16 weights of the real shapes, eager and torch.compile, median of
--runs after warm-up (CUDA events), peak memory. Prints one JSON line per measurement (the rows that
bench/flux-gpu.ts --torch FILE merges into its table) and a short table.

--impl bfl : the public BFL `flux.model.Flux` module (black-forest-labs/flux src/flux, carried in an
             ignored folder, --bfl-src; never committed), load_state_dict of the random weights.
--impl ref : scripts/device/flux_ref.py, our own PyTorch forward of the same maths (the fallback).

Usage: bench_torch.py [--impl bfl --bfl-src .ref/bfl/src] [--sizes 1024,512] [--variants dev,schnell]
                      [--modes eager,compile] [--runs 5] [--out rows.jsonl] [--small] [--device cuda]
"""
import argparse, json, math, os, statistics, sys, time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flux_ref  # noqa: E402
import random_flux  # noqa: E402


def dims(small):
    if small:
        return dict(D=256, heads=2, mlp=1024, depth=1, single=1, ctx=128, vec=64)
    return dict(D=3072, heads=24, mlp=12288, depth=19, single=38, ctx=4096, vec=768)


def build(impl, variant, d, device, bfl_src):
    gen = torch.Generator(device=device).manual_seed(0)
    W = random_flux.make_weights(random_flux.shapes(guidance=variant == 'dev', **d), device, gen, 1.0)
    assert d['D'] // d['heads'] == 128, 'both configs keep FLUX head size 128'
    axes = [16, 56, 56]
    if impl == 'ref':
        def fwd(img, img_ids, txt, txt_ids, t, y, g):
            return flux_ref.forward(W, img, img_ids, txt, txt_ids, t, y, g, axes)
        return fwd, W
    sys.path.insert(0, bfl_src)
    from flux.model import Flux, FluxParams  # noqa: E402  (public BFL code, carried, not committed)
    p = FluxParams(in_channels=64, out_channels=64, vec_in_dim=d['vec'], context_in_dim=d['ctx'], hidden_size=d['D'],
                   mlp_ratio=d['mlp'] / d['D'], num_heads=d['heads'], depth=d['depth'], depth_single_blocks=d['single'],
                   axes_dim=axes, theta=10_000, qkv_bias=True, guidance_embed=variant == 'dev')
    with torch.device('meta'):
        m = Flux(p)
    m.load_state_dict(W, assign=True, strict=True)
    m = m.to(device=device, dtype=torch.bfloat16).eval()

    def fwd(img, img_ids, txt, txt_ids, t, y, g):
        return m(img=img, img_ids=img_ids, txt=txt, txt_ids=txt_ids, timesteps=t, y=y, guidance=g)
    return fwd, W


def inputs(size, variant, d, device):
    h = w = size // 16  # packed token grid
    Li, Lt = h * w, 512 if variant == 'dev' else 256
    g = torch.Generator(device=device).manual_seed(1)
    img = torch.randn(1, Li, 64, device=device, generator=g).to(torch.bfloat16)
    txt = torch.randn(1, Lt, d['ctx'], device=device, generator=g).to(torch.bfloat16)
    y = torch.randn(1, d['vec'], device=device, generator=g).to(torch.bfloat16)
    ids = torch.zeros(h, w, 3, device=device)
    ids[..., 1] = torch.arange(h, device=device)[:, None]
    ids[..., 2] = torch.arange(w, device=device)[None, :]
    img_ids = ids.reshape(1, Li, 3)
    txt_ids = torch.zeros(1, Lt, 3, device=device)
    t = torch.full((1,), 0.75, device=device, dtype=torch.bfloat16)
    guid = torch.full((1,), 3.5, device=device, dtype=torch.bfloat16) if variant == 'dev' else None
    return img, img_ids, txt, txt_ids, t, y, guid


def timed(fn, args, runs, device):
    with torch.inference_mode():
        for _ in range(2):
            fn(*args)
        if device == 'cuda':
            torch.cuda.synchronize()
        out = []
        for _ in range(runs):
            if device == 'cuda':
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                fn(*args)
                b.record()
                torch.cuda.synchronize()
                out.append(a.elapsed_time(b))
            else:
                t0 = time.perf_counter()
                fn(*args)
                out.append((time.perf_counter() - t0) * 1e3)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--impl', choices=['bfl', 'ref'], default='bfl')
    ap.add_argument('--bfl-src', default='.ref/bfl/src')
    ap.add_argument('--sizes', default='1024,512')
    ap.add_argument('--variants', default='dev,schnell')
    ap.add_argument('--modes', default='eager,compile')
    ap.add_argument('--runs', type=int, default=5)
    ap.add_argument('--out')
    ap.add_argument('--small', action='store_true')
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--budget', type=float, default=0, help='stop starting measurements after this many seconds')
    a = ap.parse_args()
    impl = a.impl
    if impl == 'bfl' and not os.path.exists(os.path.join(a.bfl_src, 'flux', 'model.py')):
        print(f'bench_torch: no BFL flux sources at {a.bfl_src}; using --impl ref', flush=True)
        impl = 'ref'
    torch.backends.cuda.matmul.allow_tf32 = True  # bf16 GEMMs either way; as the published baselines run
    d = dims(a.small)
    t_start = time.time()
    out = open(a.out, 'w') if a.out else None
    name = f'torch-{impl}'
    print(f'bench_torch: torch {torch.__version__} on {torch.cuda.get_device_name(0) if a.device == "cuda" else "cpu"}, impl {name}', flush=True)
    for variant in a.variants.split(','):
        fwd, W = build(impl, variant, d, a.device, a.bfl_src)
        for mode in a.modes.split(','):
            if mode == 'compile' and not hasattr(torch, 'compile'):
                print(f'  {variant} compile: torch.compile unavailable in torch {torch.__version__}; skipped', flush=True)
                continue
            fn = torch.compile(fwd) if mode == 'compile' else fwd
            for size in map(int, a.sizes.split(',')):
                if a.budget and time.time() - t_start > a.budget:
                    print('  budget spent; stopping', flush=True)
                    break
                args = inputs(size, variant, d, a.device)
                if a.device == 'cuda':
                    torch.cuda.reset_peak_memory_stats()
                t0 = time.time()
                ms = timed(fn, args, a.runs, a.device)
                row = {'impl': name, 'mode': mode, 'variant': variant, 'what': 'step', 'size': size,
                       'ms': statistics.median(ms), 'runs': a.runs}
                if a.device == 'cuda':
                    row['peakGiB'] = torch.cuda.max_memory_allocated() / 2 ** 30
                print(json.dumps(row), flush=True)
                if out:
                    out.write(json.dumps(row) + '\n')
                    out.flush()
                print(f'  {variant} {mode} {size}: median {row["ms"]:.1f} ms ({", ".join(f"{x:.1f}" for x in ms)}); '
                      f'{time.time() - t0:.1f} s incl. warm-up/compile', flush=True)
        del fwd, W
        if a.device == 'cuda':
            torch.cuda.empty_cache()


if __name__ == '__main__':
    main()
