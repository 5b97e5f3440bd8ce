// Tokenizers and chat templates against Python `tokenizers` / transformers' apply_chat_template:
// test/fixtures/vlm-tok (scripts/py/gen_vlm_tokenizer_fixtures.py) holds, per family, a small
// tokenizer trained in that family's pre-tokenizer style, a chat template in its format, and
// the ids transformers gives for a table of strings (unicode, emoji, whitespace runs, special
// tokens) and conversations (system / user / assistant, images, template variables). Ids must be
// identical; decoded strings too.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { VlmTokenizer, TokenizerError, StreamDecoder } from '../runtime/vlm/tokenizer.ts';
import { ChatTemplate, ChatTemplateError, type ChatMessage } from '../runtime/vlm/chat.ts';
import { buildPrompt, internvlImageTokens } from '../runtime/vlm/prompt.ts';

const FIX = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'vlm-tok');
const FAMILIES = ['qwen2', 'qwen2_5_vl', 'qwen3', 'llama3', 'gemma3', 'internvl', 'wordlevel'];

interface Cases {
  vocab_size: number;
  encode: { text: string; ids: number[]; ids_special: number[]; decoded: string; decoded_skip: string }[];
  chats: { messages: ChatMessage[]; add_generation_prompt: boolean; vars?: Record<string, unknown>; image_tokens?: number[]; text: string; ids: number[] }[];
  errors: { messages: ChatMessage[]; error: string }[];
}
const cases = (f: string): Cases => JSON.parse(fs.readFileSync(path.join(FIX, f, 'cases.json'), 'utf8')) as Cases;

describe('tokenizers match Python tokenizers / transformers (test/fixtures/vlm-tok)', () => {
  it('the table covers every fixture folder', () => {
    expect(fs.readdirSync(FIX).filter((d) => fs.statSync(path.join(FIX, d)).isDirectory()).sort()).toEqual([...FAMILIES].sort());
  });

  it.each(FAMILIES)('%s: ids of every string, with and without special tokens; decode', (fam) => {
    const tok = VlmTokenizer.load(path.join(FIX, fam));
    const c = cases(fam);
    expect(tok.vocabSize).toBe(c.vocab_size);
    for (const e of c.encode) {
      expect(tok.encode(e.text), `${fam} ${JSON.stringify(e.text)}`).toEqual(e.ids);
      expect(tok.encode(e.text, { addSpecialTokens: true }), `${fam} ${JSON.stringify(e.text)} +special`).toEqual(e.ids_special);
      expect(tok.decode(e.ids_special), `${fam} decode ${JSON.stringify(e.text)}`).toBe(e.decoded);
      expect(tok.decode(e.ids_special, { skipSpecialTokens: true }), `${fam} decode skip ${JSON.stringify(e.text)}`).toBe(e.decoded_skip);
    }
  });

  it.each(FAMILIES)('%s: chat template renders and tokenises as apply_chat_template', (fam) => {
    const tok = VlmTokenizer.load(path.join(FIX, fam));
    expect(tok.chat).toBeDefined();
    const c = cases(fam);
    const spec = fam === 'internvl' ? internvlImageTokens(tok, tok.tokenToId('<IMG_CONTEXT>')!) : undefined;
    for (const ch of c.chats) {
      let text = tok.chat!.render(ch.messages, { addGenerationPrompt: ch.add_generation_prompt, vars: ch.vars, specials: tok.templateSpecials() });
      if (spec && ch.image_tokens) {
        const parts = text.split(spec.placeholder);
        text = parts[0]! + parts.slice(1).map((p, i) => spec.expand(ch.image_tokens![i]!) + p).join('');
      }
      expect(text, `${fam} ${JSON.stringify(ch.messages).slice(0, 80)}`).toBe(ch.text);
      expect(tok.encode(text)).toEqual(ch.ids);
    }
    for (const e of c.errors) expect(() => tok.chat!.render(e.messages, { addGenerationPrompt: true, specials: tok.templateSpecials() })).toThrow(e.error);
  });

  it('buildPrompt: the user span is exactly the user text tokens; images expanded at their placeholders', () => {
    for (const fam of ['qwen2', 'llama3', 'gemma3', 'internvl', 'wordlevel']) {
      const tok = VlmTokenizer.load(path.join(FIX, fam));
      const user = 'a red circle on a blue square';
      const p = buildPrompt(tok, { user, system: 'Rewrite.' });
      const span = p.ids.slice(...p.userSpan);
      expect(tok.decode(span).trim().toLowerCase(), fam).toBe(user);
      // the template's fixed tokens are the same for another prompt
      const q = buildPrompt(tok, { user: 'a green triangle', system: 'Rewrite.' });
      expect(q.ids.slice(0, q.userSpan[0])).toEqual(p.ids.slice(0, p.userSpan[0]));
      expect(q.ids.slice(q.userSpan[1])).toEqual(p.ids.slice(p.userSpan[1]));
      const empty = buildPrompt(tok, { user: '', system: 'Rewrite.' });
      expect(empty.userSpan[0]).toBe(empty.userSpan[1]);
    }
    const tok = VlmTokenizer.load(path.join(FIX, 'internvl'));
    const ctx = tok.tokenToId('<IMG_CONTEXT>')!;
    const spec = internvlImageTokens(tok, ctx);
    const p = buildPrompt(tok, { user: 'combine them', images: [32, 16] }, spec);
    expect(p.imagePositions.length).toBe(48);
    expect(p.ids.filter((i) => i === tok.tokenToId('<img>')).length).toBe(2);
    expect(tok.decode(p.ids.slice(...p.userSpan))).toBe('combine them');
    // images before the user text, delimiters around each run
    const first = p.imagePositions[0]!;
    expect(p.ids[first - 1]).toBe(tok.tokenToId('<img>'));
    expect(p.ids[first + 32]).toBe(tok.tokenToId('</img>'));
    expect(() => buildPrompt(VlmTokenizer.load(path.join(FIX, 'qwen2')), { user: 'x', images: [4] })).toThrow(/no vision tower/);
  });

  it('a string-content template (WordLevel, the demo style) gets images as leading placeholders', () => {
    const tok = VlmTokenizer.load(path.join(FIX, 'wordlevel'));
    const p = buildPrompt(tok, { user: 'a cat' });
    expect(p.text).toBe('<|im_start|>user\na cat<|im_end|>\n<|im_start|>assistant\n');
    // unknown words map to <unk>
    expect(tok.encode('zzzq')).toEqual([tok.tokenToId('<unk>')]);
  });

  it('bad input: a tokenizer.json that does not parse, a folder without tokenizer, unknown template variables, a broken template', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-tok-'));
    try {
      expect(() => VlmTokenizer.load(dir)).toThrow(TokenizerError);
      expect(() => VlmTokenizer.load(dir)).toThrow(/has no tokenizer.json/);
      fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{"model": {"type": "BPE"');
      expect(() => VlmTokenizer.load(dir)).toThrow(/tokenizer.json is not valid JSON/);
      fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{"version": "1.0"}');
      expect(() => VlmTokenizer.load(dir)).toThrow(/no 'model' object/);
      fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{"model": {"type": "Nope", "vocab": 3}, "added_tokens": []}');
      expect(() => VlmTokenizer.load(dir)).toThrow(/cannot be used/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    const tok = VlmTokenizer.load(path.join(FIX, 'qwen3'));
    expect(() => tok.chat!.render([{ role: 'user', content: 'x' }], { vars: { enable_thinkin: false } })).toThrow(/unknown chat template variable 'enable_thinkin'.*enable_thinking/);
    expect(() => new ChatTemplate('{% for m in messages %}{{ m.content ', 'test')).toThrow(ChatTemplateError);
  });

  it('streaming decode yields the full text once, holding back split UTF-8', () => {
    const tok = VlmTokenizer.load(path.join(FIX, 'qwen2'));
    const text = 'Emoji 🙂👍🏽 and 日本語 text';
    const ids = tok.encode(text);
    const s = new StreamDecoder(tok);
    let out = '';
    for (const id of ids) {
      const d = s.push(id);
      expect(d.includes('\uFFFD')).toBe(false);
      out += d;
    }
    out += s.flush();
    expect(out).toBe(text);
  });
});
