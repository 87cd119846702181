#!/usr/bin/env node
// The `ndiff` binary: runs the TypeScript CLI through tsx's loader.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('./ndiff.ts');
process.exitCode = await main(process.argv.slice(2));
