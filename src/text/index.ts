// Text tokenizers for the two FLUX text encoders (flux-spec §5.3).
export { type Encoded, type TextTokenizer, fitToLength } from './tokenizer.js';
export { type TokenizerLoadOptions, loadClipTokenizer, clipTokenizerJson, parseMerges } from './clip.js';
export { loadT5Tokenizer } from './t5.js';
