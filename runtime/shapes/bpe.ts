// A byte-level BPE tokenizer trained on a text corpus, written as a Hugging Face tokenizer.json in
// Qwen2's layout (NFC, the Qwen2 split regex, ByteLevel bytes-to-unicode, BPE with merges,
// ByteLevel decoder), so that Python `tokenizers`, transformers and @huggingface/tokenizers all
// load it. The shapes VLM uses it: byte-level means any user text encodes (no unknown token),
// and training merges until every corpus word is one token keeps the world's sequences short.
//
// Training is the classic algorithm (Sennrich et al.): start from the byte alphabet of each
// pre-tokenized word, repeatedly merge the most frequent adjacent pair (ties: the
// lexicographically smallest pair, so the result is deterministic), until no pair occurs at
// least `minFrequency` times or `maxMerges` is reached. Encoding a corpus word with the learned
// merges, applied by rank, reproduces its training segmentation.

/** Qwen2's pre-tokenizer split pattern (tokenizer.json of Qwen2 / Qwen2.5 / InternVL3). */
export const QWEN2_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
// the same in JavaScript (the inline case-insensitive group spelled out; used only for training)
const SPLIT_JS = /'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;

/** GPT-2's reversible bytes -> printable unicode map (the ByteLevel pre-tokenizer's alphabet). */
export function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++)
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  const out = new Array<string>(256);
  bs.forEach((b, i) => (out[b] = String.fromCodePoint(cs[i]!)));
  return out;
}

const BYTE_CHARS = bytesToUnicode();

/** A text's pre-tokenized words, each as byte-level symbols. */
export function preTokenize(text: string): string[][] {
  const enc = new TextEncoder();
  return (text.normalize('NFC').match(SPLIT_JS) ?? []).map((w) => Array.from(enc.encode(w), (b) => BYTE_CHARS[b]!));
}

export interface BpeModel {
  /** token -> id: the 256 byte symbols first (in byte order), then one per merge */
  vocab: Map<string, number>;
  merges: [string, string][];
}

export interface BpeTrainOptions {
  maxMerges?: number;
  minFrequency?: number;
}

export function trainBpe(corpus: Iterable<string>, opts: BpeTrainOptions = {}): BpeModel {
  const maxMerges = opts.maxMerges ?? 10000, minFreq = opts.minFrequency ?? 1;
  const freq = new Map<string, { syms: string[]; n: number }>();
  for (const text of corpus)
    for (const w of preTokenize(text)) {
      const k = w.join('\u0000');
      const e = freq.get(k);
      if (e) e.n++;
      else freq.set(k, { syms: w, n: 1 });
    }
  const words = [...freq.values()];
  const vocab = new Map<string, number>(BYTE_CHARS.map((c, i) => [c, i]));
  const merges: [string, string][] = [];
  while (merges.length < maxMerges) {
    const pairs = new Map<string, number>();
    for (const w of words) for (let i = 0; i + 1 < w.syms.length; i++) {
      const k = w.syms[i]! + '\u0000' + w.syms[i + 1]!;
      pairs.set(k, (pairs.get(k) ?? 0) + w.n);
    }
    let best: string | undefined, bestN = 0;
    for (const [k, n] of pairs) if (n > bestN || (n === bestN && best !== undefined && k < best)) (best = k), (bestN = n);
    if (best === undefined || bestN < minFreq) break;
    const [a, b] = best.split('\u0000') as [string, string];
    merges.push([a, b]);
    const ab = a + b;
    if (!vocab.has(ab)) vocab.set(ab, vocab.size);
    for (const w of words) {
      const s = w.syms;
      const out: string[] = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) (out.push(ab), i++);
        else out.push(s[i]!);
      }
      w.syms = out;
    }
  }
  return { vocab, merges };
}

export interface SpecialToken {
  content: string;
  /** true: a control token (skipped by decode(skip_special_tokens)) */
  special: boolean;
}

/** tokenizer.json (Qwen2 layout) with the special tokens appended after the BPE vocab. */
export function tokenizerJson(model: BpeModel, specials: readonly SpecialToken[]): object {
  const base = model.vocab.size;
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((s, i) => ({ id: base + i, content: s.content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: s.special })),
    normalizer: { type: 'NFC' },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [{ type: 'Split', pattern: { Regex: QWEN2_SPLIT }, behavior: 'Isolated', invert: false }, byteLevel],
    },
    post_processor: byteLevel,
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: Object.fromEntries(model.vocab),
      merges: model.merges,
    },
  };
}
