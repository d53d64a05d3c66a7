// The CompVis checker's decision from its image embedding: cosine similarities with the stored
// concept embeddings against the stored thresholds, rounded as numpy does.

export interface CompVisScores {
  /** round(cos - threshold + adjustment, 3) per special-care concept (diffusers' special_scores). */
  readonly special: number[];
  /** The same per concept (concept_scores). */
  readonly concept: number[];
  readonly nsfw: boolean;
}

/** numpy's round(x, 3) on a float64: rint(x · 1000) / 1000, ties to even. */
export function roundNumpy3(x: number): number {
  const y = x * 1000;
  let r = Math.round(y);
  if (Math.abs(y % 1) === 0.5 && r % 2 !== 0) r -= 1;
  return r / 1000;
}

/** F.normalize(rows, dim=1) · F.normalize(others, dim=1)ᵀ for one row, rounded to float32 (`.float().numpy()`). */
function cosineRow(a: Float32Array, aOff: number, table: Float32Array, n: number, dim: number): number[] {
  const norm = (x: Float32Array, off: number) => {
    let s = 0;
    for (let i = 0; i < dim; i++) s += x[off + i]! * x[off + i]!;
    return Math.max(Math.sqrt(s), 1e-12);
  };
  const na = norm(a, aOff);
  const out: number[] = [];
  for (let j = 0; j < n; j++) {
    const nb = norm(table, j * dim);
    let d = 0;
    for (let i = 0; i < dim; i++) d += (a[aOff + i]! / na) * (table[j * dim + i]! / nb);
    out.push(Math.fround(d));
  }
  return out;
}

/**
 * The decision of `StableDiffusionSafetyChecker.forward` for one image (diffusers
 * src/diffusers/pipelines/stable_diffusion/safety_checker.py), with
 * cog-flux's numpy<2: the float32 cosine minus the threshold's `.item()` is a float64, rounded by
 * numpy's round (rint(x·1000)/1000). A special-care score > 0 sets adjustment = 0.01 for the
 * remaining special checks and every concept check; the image is NSFW when any concept score > 0.
 */
export function compvisDecision(
  imageEmbed: Float32Array,
  embedOffset: number,
  dim: number,
  w: { concept_embeds: Float32Array; special_care_embeds: Float32Array; concept_embeds_weights: Float32Array; special_care_embeds_weights: Float32Array },
): CompVisScores {
  const nSpecial = w.special_care_embeds_weights.length;
  const nConcept = w.concept_embeds_weights.length;
  const specialCos = cosineRow(imageEmbed, embedOffset, w.special_care_embeds, nSpecial, dim);
  const conceptCos = cosineRow(imageEmbed, embedOffset, w.concept_embeds, nConcept, dim);
  let adjustment = 0.0;
  const special: number[] = [];
  for (let j = 0; j < nSpecial; j++) {
    const s = roundNumpy3(specialCos[j]! - w.special_care_embeds_weights[j]! + adjustment);
    special.push(s);
    if (s > 0) adjustment = 0.01;
  }
  const concept: number[] = [];
  for (let c = 0; c < nConcept; c++) concept.push(roundNumpy3(conceptCos[c]! - w.concept_embeds_weights[c]! + adjustment));
  return { special, concept, nsfw: concept.some((k) => k > 0) };
}
