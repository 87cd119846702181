#!/usr/bin/env node
// The `ndiff` binary of a source checkout: runs the TypeScript CLI through tsx's loader (without
// reading the dependencies' source maps: scripts/dependency-source-maps.mjs).
import { register } from 'tsx/esm/api';
import '../scripts/dependency-source-maps.mjs';

register();
const { main } = await import('./ndiff.ts');
process.exitCode = await main(process.argv.slice(2));
