// Chat templates (the Jinja in tokenizer_config.json `chat_template` or chat_template.jinja)
// through @huggingface/jinja, with the variables transformers' apply_chat_template passes:
// messages, add_generation_prompt, the special tokens (bos_token, eos_token, ...), plus the
// caller's own (enable_thinking, date_string, add_vision_id, ...). The template library gives
// raise_exception, strftime_now, namespace and the string methods templates use; it parses with
// trim_blocks + lstrip_blocks, as transformers' environment does.
//
// Messages: { role: 'system' | 'user' | 'assistant', content: string | ContentPart[] }, parts
// { type: 'text', text } and { type: 'image' } (the template writes its image placeholder, which
// the runtime then expands: see images.ts in this folder).
import { parse, Template, tokenize } from '@huggingface/jinja';

export class ChatTemplateError extends Error {
  override name = 'ChatTemplateError';
}

export type ContentPart = { type: 'text'; text: string } | { type: 'image' };

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | (string & {});
  content: string | ContentPart[];
}

export interface RenderOptions {
  addGenerationPrompt?: boolean;
  /** extra template variables; each must be one the template reads (else an error names it) */
  vars?: Record<string, unknown>;
  /** special tokens as template variables (bos_token, ...) */
  specials?: Record<string, string>;
}

/** Names the runtime always passes; not checked against the template. */
const BUILTIN_VARS = new Set(['messages', 'add_generation_prompt', 'tools', 'documents']);

export class ChatTemplate {
  private readonly template: Template;
  /** every identifier the template mentions (variables, filters' arguments, loop names) */
  readonly identifiers: ReadonlySet<string>;

  constructor(readonly source: string, readonly origin: string) {
    try {
      this.template = new Template(source);
      this.identifiers = collectIdentifiers(parse(tokenize(source, { lstrip_blocks: true, trim_blocks: true })));
    } catch (e) {
      throw new ChatTemplateError(`${origin}: the chat template does not parse: ${(e as Error).message}`);
    }
  }

  render(messages: readonly ChatMessage[], opts: RenderOptions = {}): string {
    const vars = opts.vars ?? {};
    const unknown = Object.keys(vars).filter((k) => !BUILTIN_VARS.has(k) && !this.identifiers.has(k));
    if (unknown.length) {
      const known = [...this.identifiers].filter((k) => !BUILTIN_VARS.has(k) && !/^(loop|message|messages|content|ns|namespace|raise_exception|range|true|false|none|True|False|None)$/.test(k));
      throw new ChatTemplateError(`${this.origin}: unknown chat template variable${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `'${k}'`).join(', ')}: the template reads ${known.length ? known.join(', ') : 'no other variables'}`);
    }
    try {
      return this.template.render({ ...(opts.specials ?? {}), ...vars, messages: messages.map((m) => ({ ...m })), add_generation_prompt: opts.addGenerationPrompt ?? false });
    } catch (e) {
      throw new ChatTemplateError(`${this.origin}: ${(e as Error).message}`);
    }
  }
}

function collectIdentifiers(root: unknown): Set<string> {
  const out = new Set<string>();
  const seen = new Set<object>();
  const visit = (v: unknown) => {
    if (!v || typeof v !== 'object' || seen.has(v)) return;
    seen.add(v);
    if (Array.isArray(v)) return v.forEach(visit);
    if (v instanceof Map) return v.forEach((val, key) => (visit(key), visit(val)));
    const o = v as Record<string, unknown>;
    if (o.type === 'Identifier' && typeof o.value === 'string') out.add(o.value);
    for (const k of Object.keys(o)) visit(o[k]);
  };
  visit(root);
  return out;
}
