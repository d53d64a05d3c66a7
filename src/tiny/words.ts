// A small embedded English word list for the built-in tiny tokenizers: function words first, then
// words common in image prompts. Order matters (it ranks the T5 unigram pieces, most common first)
// and must stay fixed: the tiny tokenizer files are generated from it deterministically.

export const TINY_WORDS: readonly string[] = [
  // function words
  'a', 'the', 'of', 'and', 'in', 'on', 'with', 'to', 'at', 'an', 'by', 'for', 'from', 'is', 'are', 'it', 'its',
  'this', 'that', 'under', 'over', 'near', 'behind', 'into', 'as', 'no', 'or', 'very', 'two', 'three', 'one',
  // subjects
  'cat', 'dog', 'man', 'woman', 'person', 'people', 'child', 'girl', 'boy', 'bird', 'horse', 'fish', 'tree',
  'flower', 'flowers', 'house', 'car', 'city', 'street', 'mountain', 'mountains', 'river', 'lake', 'sea',
  'ocean', 'beach', 'forest', 'garden', 'sky', 'sun', 'moon', 'star', 'stars', 'cloud', 'clouds', 'rain',
  'snow', 'water', 'fire', 'light', 'road', 'bridge', 'castle', 'robot', 'dragon', 'astronaut', 'portrait',
  'face', 'eyes', 'hair', 'hat', 'dress', 'table', 'chair', 'window', 'door', 'room', 'book', 'cup', 'coffee',
  'food', 'apple', 'cake', 'sign', 'text', 'logo', 'word', 'words', 'letter', 'field', 'grass', 'stone',
  'wall', 'boat', 'ship', 'train', 'plane', 'space', 'planet', 'world', 'night', 'day', 'morning', 'sunset',
  'winter', 'summer',
  // attributes
  'red', 'blue', 'green', 'yellow', 'orange', 'purple', 'pink', 'black', 'white', 'gray', 'brown', 'golden',
  'silver', 'dark', 'bright', 'small', 'large', 'big', 'little', 'old', 'young', 'new', 'beautiful', 'cute',
  'happy', 'sad', 'tall', 'long', 'soft', 'warm', 'cold', 'wooden', 'glass', 'metal', 'colorful', 'detailed',
  'realistic', 'vintage', 'modern', 'futuristic', 'fantasy', 'magical', 'cinematic', 'dramatic', 'epic',
  // style and photography
  'photo', 'photograph', 'picture', 'image', 'painting', 'drawing', 'sketch', 'illustration', 'art', 'style',
  'render', 'digital', 'oil', 'watercolor', 'anime', 'cartoon', 'studio', 'lighting', 'shot', 'close', 'up',
  'view', 'background', 'foreground', 'quality', 'high', 'resolution', 'sharp', 'focus', 'lens', 'camera',
  'film', 'color', 'black', 'hyper', 'ultra', 'masterpiece', 'award', 'winning',
  // verbs
  'sitting', 'standing', 'walking', 'running', 'flying', 'holding', 'wearing', 'looking', 'playing', 'sleeping',
  'reading', 'eating', 'smiling', 'made', 'covered', 'painted', 'says', 'saying', 'written',
];

/** Unique words in first-seen order. */
export function uniqueTinyWords(): string[] {
  return [...new Set(TINY_WORDS)];
}
