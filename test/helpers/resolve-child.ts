/**
 * A child process that reports where it resolves the package (test/example-child-argv.test.ts):
 * what `neural-diff` means in it, and the flags it was started with.
 */
process.send?.({ resolved: import.meta.resolve('neural-diff'), execArgv: process.execArgv });
