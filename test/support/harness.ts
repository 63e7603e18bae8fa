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

type QueryType = 'A' | 'AAAA' | 'MX' | 'TXT'

/** A zone of support/dns.js: whole-name fields, and per query type drops, delays and rcodes. */
export interface TestZone {
  mx?: Array<{ preference: number; exchange: string }>
  a?: string[]
  aaaa?: string[]
  rcode?: string | Partial<Record<QueryType, string>>
  delayMs?: number | Partial<Record<QueryType, number>>
  drop?: boolean
  dropTypes?: QueryType[]
}

export interface TestDns {
  port: number
  setZone: (name: string, zone: TestZone) => void
  clearZones: () => void
  queries: () => Array<{ name: string; type: string }>
  close: () => Promise<void>
}

interface Harness {
  startBlackHole: (opts?: { host?: string; port?: number }) => Promise<BlackHole>
  freePort: (host?: string) => Promise<number>
  startRedis: (opts?: { host?: string; port?: number }) => Promise<TestRedis>
  startDns: (zones?: Record<string, TestZone>) => Promise<TestDns>
}

// A JavaScript module without declarations: its shape is stated here, once.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const harness = require('../../support') as Harness

export const { startBlackHole, freePort, startRedis, startDns } = harness
