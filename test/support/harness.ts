// The pieces of the loopback support module (support/, JavaScript, shared with the end-to-end
// tests, bench and demo) that the unit tests use, with their types.

export interface BlackHole {
  host: string
  port: number
  pid: number
  close: () => Promise<void>
}

/** A throwaway redis-server on loopback (support/redis.js). */
export interface TestRedis {
  host: string
  port: number
  readonly pid: number | undefined
  readonly running: boolean
  start: () => Promise<void>
  stop: () => Promise<void>
  close: () => Promise<void>
  /** One command over a fresh connection: the raw RESP reply. */
  command: (args: string[]) => Promise<string>
  usedMemory: () => Promise<number>
}

interface Harness {
  startBlackHole: (opts?: { host?: string; port?: number }) => Promise<BlackHole>
  freePort: (host?: string) => Promise<number>
  startRedis: (opts?: { host?: string; port?: number }) => Promise<TestRedis>
}

// A JavaScript module without declarations: its shape is stated here, once.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const harness = require('../../support') as Harness

export const { startBlackHole, freePort, startRedis } = harness
