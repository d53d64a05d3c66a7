// Canonical LoRA deltas on BFL parameter names (reference/flux-spec.md §6).
//
// Every supported file format (diffusers/PEFT, kohya, BFL-named PEFT, XLabs, LyCORIS LoKr/LoHa,
// BFL control LoRAs, ComfyUI `.diff`) is converted into a list of LoraDelta: "add
// userScale · scale · ΔW to rows [rowStart, rowEnd) of the BFL parameter `module`", where ΔW has
// `rowEnd - rowStart` rows and `cols` columns. Fused BFL weights (`*_attn.qkv`, `linear1`) are
// never split: a diffusers `to_k` LoRA becomes a delta on rows [H, 2H) of the fused qkv weight.
//
// `scale` holds the file's own factor (alpha/rank, LyCORIS rules, 1 when the format has none); the
// user's LoRA strength is applied later (applyDeltaTo's `userScale`).

/** Detected file layout (detectLoraFormat). */
export type LoraFormat =
  /** `transformer.<diffusers module>.lora_A/lora_B` (ai-toolkit, Replicate, SimpleTuner, diffusers). */
  | 'diffusers-peft'
  /** kohya sd-scripts `lora_unet_<BFL path with _>.lora_down/lora_up/.alpha` (also ComfyUI `diffusion_model.` + lora_down). */
  | 'kohya'
  /** BFL module names with lora_A/lora_B (ComfyUI exports, fal `base_model.model.` files). */
  | 'bfl-peft'
  /** BFL FLUX.1-{Canny,Depth}-dev-lora: lora_A/lora_B(+bias) on every Linear plus QK-norm scales. */
  | 'bfl-control'
  /** XLabs x-flux `*.processor.{qkv,proj}_lora*.{down,up}`. */
  | 'xlabs'
  /** LyCORIS LoKr (`lokr_w1`, `lokr_w2`, ...). */
  | 'lokr'
  /** LyCORIS LoHa (`hada_w1_a`, ...). */
  | 'loha'
  /** ComfyUI full-weight differences only (`.diff`, `.diff_b`). */
  | 'diff';

interface DeltaBase {
  /** BFL parameter key, e.g. 'double_blocks.0.img_attn.qkv.weight' (or '...qkv.bias' for a bias delta). */
  readonly module: string;
  /** The rows of `module` this delta adds to: [rowStart, rowEnd). */
  readonly rowStart: number;
  readonly rowEnd: number;
  /** In-features of `module` (1 for a bias or another 1-D parameter). */
  readonly cols: number;
  /** The file's factor (alpha/rank etc.), NOT including the user's LoRA scale. */
  readonly scale: number;
  /** The module name as written in the file (without the tensor suffix), for messages. */
  readonly source: string;
}

/** ΔW = up · down, `down` [rank, cols], `up` [rowEnd - rowStart, rank] (row-major). */
export interface LowRankDelta extends DeltaBase {
  readonly kind: 'lowrank';
  readonly down: Float32Array;
  readonly up: Float32Array;
  readonly rank: number;
  /** The alpha found for this module (tensor or adapter metadata); undefined when the file has none. */
  readonly alpha?: number;
}

/** ΔW given in full, [rowEnd - rowStart, cols] (ComfyUI `.diff`, `lora_B.bias`, or an expanded LoKr). */
export interface FullDelta extends DeltaBase {
  readonly kind: 'full';
  readonly delta: Float32Array;
  readonly alpha?: number;
}

/**
 * LyCORIS LoKr kept factored: ΔW = kron(w1 [a, b], w2 [c, d]), a·c = rows, b·d = cols. The
 * factors are small; the [rows, cols] product is only formed by denseDelta / applyDeltaTo.
 */
export interface KronDelta extends DeltaBase {
  readonly kind: 'lokr';
  readonly w1: Float32Array;
  readonly w1Shape: readonly [number, number];
  readonly w2: Float32Array;
  readonly w2Shape: readonly [number, number];
  /** The LoKr rank used for the scale (undefined when both factors are full matrices). */
  readonly rank?: number;
  readonly alpha?: number;
}

/** LyCORIS LoHa kept factored: ΔW = (w1a [rows, r1] · w1b [r1, cols]) ⊙ (w2a [rows, r2] · w2b [r2, cols]). */
export interface HadamardDelta extends DeltaBase {
  readonly kind: 'loha';
  readonly w1a: Float32Array;
  readonly w1b: Float32Array;
  readonly w2a: Float32Array;
  readonly w2b: Float32Array;
  /** r1 (hada_w1_b.shape[0], the rank the scale uses). */
  readonly rank: number;
  /** r2 (normally equal to rank). */
  readonly rank2: number;
  readonly alpha?: number;
}

export type LoraDelta = LowRankDelta | FullDelta | KronDelta | HadamardDelta;

/**
 * A parameter the file replaces outright (BFL control LoRAs overwrite the QK-norm scales). Not
 * scaled by the user's LoRA strength (BFL loads them with load_state_dict).
 */
export interface ParamOverride {
  /** BFL parameter key, e.g. 'double_blocks.0.img_attn.norm.query_norm.scale'. */
  readonly key: string;
  readonly shape: readonly number[];
  readonly value: Float32Array;
  readonly source: string;
}

export interface DroppedKey {
  readonly key: string;
  readonly reason: string;
}

export interface ParsedLora {
  readonly format: LoraFormat;
  readonly deltas: LoraDelta[];
  /** Parameters replaced by the file (BFL control LoRAs' QK-norm scales); usually empty. */
  readonly overrides: ParamOverride[];
  /** Keys that were recognised and deliberately not used (text encoder, DoRA magnitudes, ...). */
  readonly dropped: DroppedKey[];
  /** The rank when every factored delta has the same one. */
  readonly rank?: number;
  /** Every distinct rank, ascending. */
  readonly ranks: number[];
  /** The alpha when every module that has one shares it (undefined: none in the file, or several). */
  readonly alpha?: number;
  /** Every distinct alpha, ascending. */
  readonly alphas: number[];
  readonly warnings: string[];
}

/** The base model the LoRA must fit: derived from its BFL key list (loraTargetFromKeys). */
export interface LoraTarget {
  readonly hidden: number;
  readonly mlpHidden: number;
  readonly depth: number;
  readonly depthSingle: number;
  /** Every BFL transformer parameter and its shape (bflTransformerKeys(cfg)). */
  readonly keys: ReadonlyMap<string, readonly number[]>;
}
