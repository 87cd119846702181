/** Moved to the library (src/front/data-folders.ts); re-exported for the commands that still import it here. */
export * from '../src/front/data-folders.ts';
