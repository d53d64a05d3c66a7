// A dump hook for named intermediates (in the style of llama.cpp examples/eval-callback):
// pass `taps: printTaps(console.log)` to Flux.forward to print each tap's name, shape, dtype,
// summary statistics and first values, so a mismatch can be traced to the first bad block.

import type { Tensor } from '../tensor/tensor.js';

export function summarize(name: string, t: Tensor, first = 6): string {
  const v = t.toFloat32();
  let sum = 0;
  let sq = 0;
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < v.length; i++) {
    const x = v[i]!;
    sum += x;
    sq += x * x;
    if (x < min) min = x;
    if (x > max) max = x;
  }
  const n = Math.max(1, v.length);
  const mean = sum / n;
  const std = Math.sqrt(Math.max(0, sq / n - mean * mean));
  const head = Array.from(v.subarray(0, first), (x) => x.toPrecision(5)).join(', ');
  const g = (x: number) => x.toPrecision(4);
  return `${name} [${t.shape.join(', ')}] ${t.dtype} mean ${g(mean)} std ${g(std)} min ${g(min)} max ${g(max)} | ${head}${v.length > first ? ', ...' : ''}`;
}

/** A tap that logs every intermediate whose name passes `filter` (all by default). */
export function printTaps(log: (line: string) => void, filter: (name: string) => boolean = () => true): (name: string, t: Tensor) => void {
  return (name, t) => {
    if (filter(name)) log(summarize(name, t));
  };
}
