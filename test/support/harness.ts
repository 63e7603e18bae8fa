// The pieces of the loopback support module (support/, JavaScript, shared with the end-to-end
// tests, bench and demo) that the unit tests use, with their types.

export interface BlackHole {
  host: string
  port: number
  pid: number
  close: () => Promise<void>
}

interface Harness {
  startBlackHole: (opts?: { host?: string; port?: number }) => Promise<BlackHole>
  freePort: (host?: string) => Promise<number>
}

// A JavaScript module without declarations: its shape is stated here, once.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const harness = require('../../support') as Harness

export const { startBlackHole, freePort } = harness
