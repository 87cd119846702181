/** Moved to the library (src/front/text.ts); re-exported for the commands that import it here. */
export * from '../src/front/text.ts';
