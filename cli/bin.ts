#!/usr/bin/env node
// The `ndiff` binary of the published package (compiled to dist/cli/bin.js). Inside the repo,
// `node cli/ndiff.mjs` runs the same CLI from the TypeScript sources.
import { main } from './ndiff.ts';

process.exitCode = await main(process.argv.slice(2));
