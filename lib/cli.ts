// The `haraka-happy-eyeballs` command's entry module; the command lives in lib/cli/.

export { USAGE } from './cli/args'
export { type CliIo, type CliOutput, main } from './cli/main'
