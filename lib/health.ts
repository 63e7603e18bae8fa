// Recent connect outcomes, per address and per (MX host, family), so the next message to a
// host whose IPv6 path just failed starts with IPv4 (RFC 6555 §4.2 caching). Bounded by
// an LRU size limit and a TTL: a flood of distinct destinations cannot grow it. Compact:
// 100k destinations take under 20 MB (bench/memory.js).

import type { Family } from './classify'
import { fingerprint, type Fingerprint, OK, OutcomeTable, SLOW } from './outcome-table'

export interface ConnectOutcome {
  ok: boolean
  /** Error text for a failure, e.g. `ECONNREFUSED` or `no answer in 250 ms`. */
  error?: string
  /**
   * Not a failure: the address had not answered after a whole attempt delay when another
   * address won the race. It may move the address back in the order; it is never an error.
   */
  slow?: boolean
  latencyMs: number
  /** Epoch ms when it was seen. */
  at: number
}

export interface HealthView {
  addressFailed(address: string): boolean
  familyFailed(exchange: string, family: Family): boolean
  /** Lost a race without an answer (see ConnectOutcome.slow); absent: nothing is slow. */
  addressSlow?(address: string): boolean
  familySlow?(exchange: string, family: Family): boolean
}

export interface HealthOptions {
  ttlMs: number
  maxEntries: number
  /** Clock for tests; defaults to performance.now. */
  perf?: { now(): number }
}

// Tags keep the kinds of key apart: an address, or an MX host with one family.
const ADDRESS = 1
const FAMILY_TAG: Record<Family, number> = { ipv4: 4, ipv6: 6 }

const addressKey = (address: string): Fingerprint => fingerprint(ADDRESS, address)
const familyKey = (exchange: string, family: Family): Fingerprint =>
  fingerprint(FAMILY_TAG[family], exchange, true)

const flagsOf = (o: ConnectOutcome): number => (o.ok ? OK : 0) | (o.slow ? SLOW : 0)
const isFailure = (flags: number | undefined): boolean => flags !== undefined && (flags & (OK | SLOW)) === 0
const isSlow = (flags: number | undefined): boolean => flags !== undefined && (flags & SLOW) !== 0

/**
 * Entries are a few numbers each (lib/outcome-table): the flags, the latency (to float32
 * precision), when it was seen and the error text, interned.
 */
export class HealthCache implements HealthView {
  private readonly entries: OutcomeTable | undefined

  constructor(opts: HealthOptions) {
    const perf = opts.perf ?? performance
    // ttl 0 means "remember nothing".
    this.entries =
      opts.ttlMs > 0
        ? new OutcomeTable({ maxEntries: opts.maxEntries, ttlMs: opts.ttlMs, now: () => perf.now() })
        : undefined
  }

  /** The newest outcome wins: a success after a failure clears the demotion. */
  record(address: string, family: Family, exchange: string | undefined, outcome: ConnectOutcome): void {
    if (!this.entries) return
    const flags = flagsOf(outcome)
    this.entries.set(addressKey(address), flags, outcome.latencyMs, outcome.at, outcome.error)
    if (exchange)
      this.entries.set(familyKey(exchange, family), flags, outcome.latencyMs, outcome.at, outcome.error)
  }

  addressFailed(address: string): boolean {
    return isFailure(this.entries?.flagsOf(addressKey(address)))
  }

  familyFailed(exchange: string, family: Family): boolean {
    return isFailure(this.entries?.flagsOf(familyKey(exchange, family)))
  }

  addressSlow(address: string): boolean {
    return isSlow(this.entries?.flagsOf(addressKey(address)))
  }

  familySlow(exchange: string, family: Family): boolean {
    return isSlow(this.entries?.flagsOf(familyKey(exchange, family)))
  }

  /** The newest outcome of `address`, as recorded (its latency to float32 precision). */
  lookup(address: string): ConnectOutcome | undefined {
    const stored = this.entries?.get(addressKey(address))
    if (!stored) return undefined
    return {
      ok: (stored.flags & OK) !== 0,
      ...(stored.error !== undefined ? { error: stored.error } : {}),
      ...(stored.flags & SLOW ? { slow: true } : {}),
      latencyMs: stored.latencyMs,
      at: stored.at,
    }
  }

  get size(): number {
    return this.entries?.size ?? 0
  }

  clear(): void {
    this.entries?.clear()
  }
}
