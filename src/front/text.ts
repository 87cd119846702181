/**
 * Text from a payload or a model folder, made safe to print on a terminal: a model id, a tensor
 * name or a metadata value is whatever its publisher wrote, and raw control characters in it
 * (ESC sequences, carriage returns, bidirectional overrides) could rewrite what the terminal
 * shows. They are printed as escapes instead (`\u001b`, `\r`).
 */

/** C0 and C1 controls, DEL, bidirectional formatting characters, line and paragraph separators. */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const UNSAFE_BUT_NEWLINE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const SHORT: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b', '\f': '\\f' };

function escape(c: string): string {
  return SHORT[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/** One field (a model id, a tensor name): every unsafe character escaped, newlines included. */
export function printable(value: unknown): string {
  return String(value).replace(UNSAFE, escape);
}

/**
 * Whole lines of output (a message, a JSON document): unsafe characters escaped, newlines kept.
 * In JSON text, every character this changes is inside a string (structure is ASCII), and its
 * `\uXXXX` escape reads back as the same character, so the document means the same.
 */
export function terminalSafe(text: string): string {
  return text.replace(UNSAFE_BUT_NEWLINE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** The longest error message printed whole; a longer one keeps its start and end. */
export const MAX_MESSAGE_CHARS = 4000;

/**
 * A message cut to at most about {@link MAX_MESSAGE_CHARS} characters: its start and its end
 * (where the advice is) kept, the middle replaced by how much was left out. A hostile model can
 * make a message quote megabytes (a shape of a million dimensions, a long name).
 */
export function boundedMessage(msg: string, max = MAX_MESSAGE_CHARS): string {
  if (msg.length <= max) return msg;
  const head = Math.floor(max * 0.7);
  const tail = max - head;
  return `${msg.slice(0, head)} … [${msg.length - head - tail} characters left out] … ${msg.slice(msg.length - tail)}`;
}
