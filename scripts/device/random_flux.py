#!/usr/bin/env python3
"""A random FLUX.1-dev transformer (BFL key names, bf16), random inputs, and the PyTorch reference
outputs of scripts/device/flux_ref.py, for comparing our engine on the device (gpu-compare.mjs).

Writes into --dir:
  flux-random.safetensors   the weights, bf16, one file (23.8 GB at full size)
  inputs.safetensors        img [1, L_img, 64] bf16, txt [1, L_txt, 4096] bf16, y [1, 768] bf16,
                            img_ids [1, L_img, 3] / txt_ids [1, L_txt, 3] f32, timesteps [1] = 1.0,
                            guidance [1] = 4.0 (--guidance) (all f32 except the three activations)
  ref-bf16.safetensors      out: flux_ref in bf16 (weights and activations bf16), stored f32
  ref-f32.safetensors       out: flux_ref in f32 on the same bf16-valued weights ("f32 with bf16 weights")
  meta.json                 config, timings, per-block residual rms (finite / not exploding check)

Scales: matrices N(0, 1/fan_in), biases N(0, 0.02^2), QK-norm scales 1 + N(0, 0.1^2); the
modulation matrices are multiplied by --mod-scale (default 1) and the residual stream is checked
to stay finite at full depth (meta.json, and printed).

Full size on the GPU:   random_flux.py --dir /tmp/fr
Small local test:       random_flux.py --dir /tmp/fr --device cpu --depth 1 --single 1 --img-hw 16 16 --txt-len 64
"""
import argparse, json, math, os, sys, time

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flux_ref  # noqa: E402


def shapes(D=3072, heads=24, mlp=12288, depth=19, single=38, ctx=4096, vec=768, inc=64, outc=64, guidance=True):
    hd = D // heads
    s = {'img_in.weight': [D, inc], 'img_in.bias': [D], 'txt_in.weight': [D, ctx], 'txt_in.bias': [D]}
    emb = [('time_in', 256), ('vector_in', vec)] + ([('guidance_in', 256)] if guidance else [])
    for n, i in emb:
        s.update({f'{n}.in_layer.weight': [D, i], f'{n}.in_layer.bias': [D], f'{n}.out_layer.weight': [D, D], f'{n}.out_layer.bias': [D]})
    for b in range(depth):
        p = f'double_blocks.{b}.'
        for st in ('img', 'txt'):
            s.update({
                f'{p}{st}_mod.lin.weight': [6 * D, D], f'{p}{st}_mod.lin.bias': [6 * D],
                f'{p}{st}_attn.qkv.weight': [3 * D, D], f'{p}{st}_attn.qkv.bias': [3 * D],
                f'{p}{st}_attn.norm.query_norm.scale': [hd], f'{p}{st}_attn.norm.key_norm.scale': [hd],
                f'{p}{st}_attn.proj.weight': [D, D], f'{p}{st}_attn.proj.bias': [D],
                f'{p}{st}_mlp.0.weight': [mlp, D], f'{p}{st}_mlp.0.bias': [mlp],
                f'{p}{st}_mlp.2.weight': [D, mlp], f'{p}{st}_mlp.2.bias': [D],
            })
    for b in range(single):
        p = f'single_blocks.{b}.'
        s.update({
            f'{p}modulation.lin.weight': [3 * D, D], f'{p}modulation.lin.bias': [3 * D],
            f'{p}linear1.weight': [3 * D + mlp, D], f'{p}linear1.bias': [3 * D + mlp],
            f'{p}linear2.weight': [D, D + mlp], f'{p}linear2.bias': [D],
            f'{p}norm.query_norm.scale': [hd], f'{p}norm.key_norm.scale': [hd],
        })
    s.update({'final_layer.adaLN_modulation.1.weight': [2 * D, D], 'final_layer.adaLN_modulation.1.bias': [2 * D],
              'final_layer.linear.weight': [outc, D], 'final_layer.linear.bias': [outc]})
    return s


def make_weights(shp, device, gen, mod_scale):
    W = {}
    for k, s in shp.items():
        if len(s) == 2:
            std = 1 / math.sqrt(s[1]) * (mod_scale if ('_mod.' in k or '.modulation.' in k) else 1.0)
            t = torch.randn(s, device=device, generator=gen) * std
        elif k.endswith('.scale'):
            t = 1 + 0.1 * torch.randn(s, device=device, generator=gen)
        else:
            t = 0.02 * torch.randn(s, device=device, generator=gen)
        W[k] = t.to(torch.bfloat16)
    return W


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--dir', required=True)
    ap.add_argument('--device', default='cuda')
    ap.add_argument('--depth', type=int, default=19)
    ap.add_argument('--single', type=int, default=38)
    ap.add_argument('--img-hw', type=int, nargs=2, default=[64, 64], help='latent token grid (64 64 = 1024x1024)')
    ap.add_argument('--txt-len', type=int, default=512)
    ap.add_argument('--mod-scale', type=float, default=1.0)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--guidance', type=float, default=4.0,
                    help='4.0: 1000*g is exact in bf16 (3.5 -> bf16 3504 vs f32 3500 would make the bf16 and f32 references differ by design)')
    ap.add_argument('--skip-f32', action='store_true', help='only the bf16 reference')
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    dev = a.device
    if dev.startswith('cuda'):
        torch.backends.cuda.matmul.allow_tf32 = False  # the f32 reference must be real f32
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    gen = torch.Generator(device=dev).manual_seed(a.seed)
    meta = {'depth': a.depth, 'single': a.single, 'img_hw': a.img_hw, 'txt_len': a.txt_len, 'mod_scale': a.mod_scale,
            'torch': torch.__version__, 'device': torch.cuda.get_device_name(0) if dev.startswith('cuda') else 'cpu'}
    t0 = time.time()
    W = make_weights(shapes(depth=a.depth, single=a.single), dev, gen, a.mod_scale)
    n = sum(t.numel() for t in W.values())
    if dev.startswith('cuda'):
        torch.cuda.synchronize()
    meta['params'] = n
    meta['gen_s'] = round(time.time() - t0, 2)
    print(f'weights: {n / 1e9:.3f} B params ({2 * n / 1e9:.2f} GB bf16) generated on {dev} in {meta["gen_s"]}s', flush=True)

    h, w = a.img_hw
    Li, Lt = h * w, a.txt_len
    img_ids = torch.zeros(1, Li, 3)
    img_ids[0, :, 1] = torch.arange(h).repeat_interleave(w).float()
    img_ids[0, :, 2] = torch.arange(w).repeat(h).float()
    cg = torch.Generator().manual_seed(a.seed + 1)
    I = {
        'img': torch.randn(1, Li, 64, generator=cg).to(torch.bfloat16),
        'txt': torch.randn(1, Lt, 4096, generator=cg).to(torch.bfloat16),
        'y': torch.randn(1, 768, generator=cg).to(torch.bfloat16),
        'img_ids': img_ids, 'txt_ids': torch.zeros(1, Lt, 3),
        'timesteps': torch.tensor([1.0]), 'guidance': torch.tensor([a.guidance]),
    }
    save_file(I, f'{a.dir}/inputs.safetensors')
    Id = {k: v.to(dev) for k, v in I.items()}

    def run(Wd, label):
        taps = {}
        if dev.startswith('cuda'):
            torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
        t = time.time()
        with torch.no_grad():
            out = flux_ref.forward(Wd, Id['img'], Id['img_ids'], Id['txt'], Id['txt_ids'], Id['timesteps'], Id['y'], Id['guidance'],
                                   [16, 56, 56], 10000, taps)
        if dev.startswith('cuda'):
            torch.cuda.synchronize()
        el = time.time() - t
        rms = {k: round(v.float().pow(2).mean().sqrt().item(), 4) for k, v in taps.items()}
        o = out.float().cpu()
        finite = bool(torch.isfinite(o).all()) and all(math.isfinite(v) for v in rms.values())
        peak = torch.cuda.max_memory_allocated() / 2**30 if dev.startswith('cuda') else None
        print(f'ref {label}: {el:.2f}s, out rms {o.pow(2).mean().sqrt():.4g}, max residual rms {max(rms.values()):.4g}, finite {finite}'
              + (f', torch peak {peak:.2f} GiB' if peak else ''), flush=True)
        meta[f'ref_{label}'] = {'seconds': round(el, 3), 'out_rms': o.pow(2).mean().sqrt().item(), 'finite': finite,
                                'residual_rms': rms, 'torch_peak_gib': peak}
        return o

    o16 = run(W, 'bf16')
    save_file({'out': o16.contiguous()}, f'{a.dir}/ref-bf16.safetensors')
    # Weights to host first (the file is written last, after the GPU is done with them).
    Wc = {k: v.cpu() for k, v in W.items()}
    if not a.skip_f32:
        for k in list(W):  # in place, one tensor at a time: 47.6 GB of f32 weights at full size
            W[k] = W[k].float()
        if dev.startswith('cuda'):
            torch.cuda.empty_cache()
        o32 = run(W, 'f32')
        save_file({'out': o32.contiguous()}, f'{a.dir}/ref-f32.safetensors')
        e = flux_ref.rel_err(o16, o32)
        meta['torch_bf16_vs_f32_rel_err'] = e
        print(f'torch bf16 vs f32 (bf16 weights): rel err {e:.3e}  (the bf16 noise floor our bf16 result is compared with)', flush=True)
    del W
    if dev.startswith('cuda'):
        torch.cuda.empty_cache()
    t = time.time()
    save_file(Wc, f'{a.dir}/flux-random.safetensors')
    meta['save_s'] = round(time.time() - t, 1)
    print(f'saved {a.dir}/flux-random.safetensors ({os.path.getsize(f"{a.dir}/flux-random.safetensors") / 1e9:.2f} GB) in {meta["save_s"]}s')
    json.dump(meta, open(f'{a.dir}/meta.json', 'w'), indent=1)


if __name__ == '__main__':
    main()
