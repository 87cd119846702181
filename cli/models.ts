/** Moved to the library (src/front/models.ts); re-exported for the commands that still import it here. */
export * from '../src/front/models.ts';
