/** Progress of a library call: one line of text at a time, what `ndiff` prints on stderr (its --quiet drops them). */
export type Progress = (line: string) => void;

/** The default: progress goes nowhere. */
export const NO_PROGRESS: Progress = () => {};
