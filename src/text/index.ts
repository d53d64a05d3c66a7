// Text tokenizers for the two FLUX text encoders, from the hub's tokenizer/ and tokenizer_2/ folders.
export { type Encoded, type TextTokenizer, fitToLength } from './tokenizer.js';
export { type TokenizerLoadOptions, loadClipTokenizer, clipTokenizerJson, parseMerges } from './clip.js';
export { loadT5Tokenizer } from './t5.js';
