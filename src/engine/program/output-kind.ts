/**
 * How a graph model's output reads, named by the engine (the program model picks one for the
 * output it trains on) and by the measured closeness of a payload (src/diff/closeness.ts, which
 * re-exports it). Types only, free of tfjs, so the `neural-diff` entry's declarations can name it.
 */

/** How an ONNX or LiteRT model's output reads: `probability` (one value, decided at 0.5), `logit` (decided at 0), `probabilities` or `logits` (top-1), `values` (closeness only). */
export type OutputKind = 'probability' | 'logit' | 'probabilities' | 'logits' | 'values';
