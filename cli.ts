#!/usr/bin/env node
// The `haraka-happy-eyeballs` command; all logic is in lib/cli.ts.

import { main } from './lib/cli'

void main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  isTTY: process.stderr.isTTY === true,
}).then((code) => {
  process.exitCode = code
})
