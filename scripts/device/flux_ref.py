#!/usr/bin/env python3
"""Our own minimal PyTorch FLUX.1 transformer forward, written from black-forest-labs/flux
src/flux/model.py Flux.forward, src/flux/modules/layers.py and src/flux/math.py (architecture and
where BFL's modules compute in fp32). Weights are a dict of BFL-named tensors.

--dtype f32 : every weight is cast to f32 and the whole forward runs in f32 (for a bf16 checkpoint
              this is "f32 with bf16 weights").
--dtype bf16: weights and activations bf16, one rounding per PyTorch op; LN/RMS statistics,
              RoPE, softmax and the timestep sin/cos in fp32 inside, as BFL's modules do.

Usage:
  flux_ref.py --check-fixture test/fixtures/bfl-tiny-a        # vs the BFL oracle (f32, rel < 1e-5)
  flux_ref.py --weights W.safetensors --inputs I.safetensors --out O.safetensors --dtype bf16 --device cuda
    (inputs: img, img_ids, txt, txt_ids, timesteps, y, guidance; writes `out` [B, L_img, 64] as f32)
"""
import argparse, json, math, sys, time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file


def lin(W, name, x):
    return F.linear(x, W[name + '.weight'], W.get(name + '.bias'))


def mlp_embedder(W, name, x):  # MLPEmbedder: out_layer(SiLU(in_layer(x)))
    return lin(W, name + '.out_layer', F.silu(lin(W, name + '.in_layer', x)))


def timestep_embedding(t, dt, dim=256, max_period=10000.0, time_factor=1000.0):
    t = t.to(dt) * time_factor  # one op in t's dtype (bf16: bf16(bf16(t)*1000))
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(dt)  # cos FIRST


def rope_table(ids, axes_dim, theta):  # ids [B, L, n] -> [B, 1, L, sum/2, 2, 2] f32
    parts = []
    for a, d in enumerate(axes_dim):
        scale = torch.arange(0, d, 2, dtype=torch.float32, device=ids.device) / d
        omega = 1.0 / (theta ** scale)
        phi = ids[..., a].float()[..., None] * omega  # [B, L, d/2]
        c, s = torch.cos(phi), torch.sin(phi)
        parts.append(torch.stack([c, -s, s, c], dim=-1).reshape(*phi.shape, 2, 2))
    return torch.cat(parts, dim=-3).unsqueeze(1)


def apply_rope(x, pe):  # x [B, H, L, D]; adjacent pairs (2k, 2k+1) rotated in fp32
    xf = x.float().reshape(*x.shape[:-1], -1, 1, 2)
    out = pe[..., 0] * xf[..., 0] + pe[..., 1] * xf[..., 1]
    return out.reshape(x.shape).type_as(x)


def rms_norm(x, scale):  # fp32 normalise -> model dtype -> * scale (BFL QK norm: layers.py RMSNorm)
    xf = x.float()
    rrms = torch.rsqrt(torch.mean(xf * xf, dim=-1, keepdim=True) + 1e-6)
    return (xf * rrms).to(x.dtype) * scale


def ln(x):
    return F.layer_norm(x, (x.shape[-1],), eps=1e-6)


def modulation(W, name, silu_vec, n):  # [B, n*D] -> n chunks [B, 1, D]: shift, scale, gate, ...
    return lin(W, name + '.lin', silu_vec)[:, None, :].chunk(n, dim=-1)


def qkv_heads(h, H):  # [B, L, 3*H*D] -> q, k, v [B, H, L, D]   ("B L (K H D) -> K B H L D")
    B, L, _ = h.shape
    return h.reshape(B, L, 3, H, -1).permute(2, 0, 3, 1, 4).unbind(0)


def attention(q, k, v, pe):
    q, k = apply_rope(q, pe), apply_rope(k, pe)
    a = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(D), no mask
    B, H, L, D = a.shape
    return a.transpose(1, 2).reshape(B, L, H * D)


def double_block(W, p, img, txt, silu_vec, pe, H):
    i1s, i1c, i1g, i2s, i2c, i2g = modulation(W, p + 'img_mod', silu_vec, 6)
    t1s, t1c, t1g, t2s, t2c, t2g = modulation(W, p + 'txt_mod', silu_vec, 6)
    iq, ik, iv = qkv_heads(lin(W, p + 'img_attn.qkv', (1 + i1c) * ln(img) + i1s), H)
    tq, tk, tv = qkv_heads(lin(W, p + 'txt_attn.qkv', (1 + t1c) * ln(txt) + t1s), H)
    iq, ik = rms_norm(iq, W[p + 'img_attn.norm.query_norm.scale']), rms_norm(ik, W[p + 'img_attn.norm.key_norm.scale'])
    tq, tk = rms_norm(tq, W[p + 'txt_attn.norm.query_norm.scale']), rms_norm(tk, W[p + 'txt_attn.norm.key_norm.scale'])
    a = attention(torch.cat([tq, iq], 2), torch.cat([tk, ik], 2), torch.cat([tv, iv], 2).to(iq.dtype), pe)  # text FIRST
    Lt = txt.shape[1]
    ta, ia = a[:, :Lt], a[:, Lt:]
    img = img + i1g * lin(W, p + 'img_attn.proj', ia)
    img = img + i2g * lin(W, p + 'img_mlp.2', F.gelu(lin(W, p + 'img_mlp.0', (1 + i2c) * ln(img) + i2s), approximate='tanh'))
    txt = txt + t1g * lin(W, p + 'txt_attn.proj', ta)
    txt = txt + t2g * lin(W, p + 'txt_mlp.2', F.gelu(lin(W, p + 'txt_mlp.0', (1 + t2c) * ln(txt) + t2s), approximate='tanh'))
    return img, txt


def single_block(W, p, x, silu_vec, pe, H):
    s, c, g = modulation(W, p + 'modulation', silu_vec, 3)
    D = x.shape[-1]
    h = lin(W, p + 'linear1', (1 + c) * ln(x) + s)
    qkv, mlp = h[..., :3 * D], h[..., 3 * D:]
    q, k, v = qkv_heads(qkv, H)
    q, k = rms_norm(q, W[p + 'norm.query_norm.scale']), rms_norm(k, W[p + 'norm.key_norm.scale'])
    a = attention(q, k, v.to(q.dtype), pe)
    return x + g * lin(W, p + 'linear2', torch.cat([a, F.gelu(mlp, approximate='tanh')], dim=-1))


def infer_params(W):
    D = W['img_in.weight'].shape[0]
    H = D // W['double_blocks.0.img_attn.norm.query_norm.scale'].shape[0] if 'double_blocks.0.img_attn.norm.query_norm.scale' in W \
        else D // W['single_blocks.0.norm.query_norm.scale'].shape[0]
    depth = len({k.split('.')[1] for k in W if k.startswith('double_blocks.')})
    single = len({k.split('.')[1] for k in W if k.startswith('single_blocks.')})
    return D, H, depth, single


def forward(W, img, img_ids, txt, txt_ids, timesteps, y, guidance, axes_dim, theta=10000, taps=None):
    """BFL Flux.forward (src/flux/model.py). W already in the compute dtype; ids f32 [B, L, 3]."""
    dt = W['img_in.weight'].dtype
    D, H, depth, single = infer_params(W)
    img, txt, y = img.to(dt), txt.to(dt), y.to(dt)
    img = lin(W, 'img_in', img)
    vec = mlp_embedder(W, 'time_in', timestep_embedding(timesteps, dt))
    if 'guidance_in.in_layer.weight' in W:
        vec = vec + mlp_embedder(W, 'guidance_in', timestep_embedding(guidance, dt))
    vec = vec + mlp_embedder(W, 'vector_in', y)
    txt = lin(W, 'txt_in', txt)
    B = img.shape[0]
    pe = rope_table(torch.cat([txt_ids.expand(B, -1, -1), img_ids.expand(B, -1, -1)], dim=1), axes_dim, theta)
    silu_vec = F.silu(vec)
    for i in range(depth):
        img, txt = double_block(W, f'double_blocks.{i}.', img, txt, silu_vec, pe, H)
        if taps is not None:
            taps[f'double_blocks.{i}.img'], taps[f'double_blocks.{i}.txt'] = img, txt
    x = torch.cat([txt, img], dim=1)
    for i in range(single):
        x = single_block(W, f'single_blocks.{i}.', x, silu_vec, pe, H)
        if taps is not None:
            taps[f'single_blocks.{i}'] = x
    x = x[:, txt.shape[1]:]
    shift, scale = lin(W, 'final_layer.adaLN_modulation.1', silu_vec)[:, None, :].chunk(2, dim=-1)  # SHIFT first
    return lin(W, 'final_layer.linear', (1 + scale) * ln(x) + shift)


DTYPES = {'f32': torch.float32, 'bf16': torch.bfloat16}


def load_weights(path, dtype, device):
    W = load_file(path, device='cpu')
    return {k: v.to(device=device, dtype=dtype) for k, v in W.items()}


def rel_err(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


def check_fixture(d):
    cfg = json.load(open(f'{d}/config.json'))['flux']
    W = load_weights(f'{d}/weights-flux.safetensors', torch.float32, 'cpu')
    C = load_file(f'{d}/cases.safetensors')
    taps = {}
    with torch.no_grad():
        out = forward(W, C['forward.img'], C['forward.img_ids'], C['txt'], C['forward.txt_ids'], C['forward.timesteps'], C['vec'],
                      C['forward.guidance'], cfg['axes_dim'], cfg['theta'], taps)
    ok = True
    for k, v in taps.items():
        if f'tap.{k}' in C:
            print(f'  tap {k}: rel err {rel_err(v, C[f"tap.{k}"]):.3e}')
    e = rel_err(out, C['forward.out'])
    ok = e < 1e-5
    print(f'{"ok" if ok else "FAIL"} forward.out vs BFL oracle {d}: rel err {e:.3e} (f32, tolerance 1e-5)')
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--check-fixture')
    ap.add_argument('--weights')
    ap.add_argument('--inputs')
    ap.add_argument('--out')
    ap.add_argument('--dtype', choices=list(DTYPES), default='bf16')
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--axes-dim', default='16,56,56')
    a = ap.parse_args()
    if a.check_fixture:
        sys.exit(check_fixture(a.check_fixture))
    W = load_weights(a.weights, DTYPES[a.dtype], a.device)
    I = {k: v.to(a.device) for k, v in load_file(a.inputs).items()}
    axes = [int(s) for s in a.axes_dim.split(',')]
    with torch.no_grad():
        t0 = time.time()
        out = forward(W, I['img'], I['img_ids'], I['txt'], I['txt_ids'], I['timesteps'], I['y'], I['guidance'], axes)
        if a.device.startswith('cuda'):
            torch.cuda.synchronize()
        dt = time.time() - t0
    o = out.float().cpu()
    print(f'flux_ref {a.dtype} on {a.device}: out {tuple(o.shape)} in {dt:.2f}s, rms {o.pow(2).mean().sqrt():.4g}, '
          f'finite {bool(torch.isfinite(o).all())}')
    if a.out:
        save_file({'out': o.contiguous()}, a.out)


if __name__ == '__main__':
    main()
