// Recent connect outcomes, per address and per (MX host, family), so the next message to a
// host whose IPv6 path just failed starts with IPv4 (RFC 6555 §4.2 caching). Bounded by
// an LRU size limit and a TTL: a flood of distinct destinations cannot grow it.

import { LRUCache } from 'lru-cache'

import type { Family } from './classify'

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
  /** Clock for tests; defaults to performance.now via lru-cache. */
  perf?: { now(): number }
}

const addressKey = (address: string): string => `a ${address}`
const familyKey = (exchange: string, family: Family): string => `f ${exchange.toLowerCase()} ${family}`

const isFailure = (o: ConnectOutcome | undefined): boolean => Boolean(o && !o.ok && !o.slow)

export class HealthCache implements HealthView {
  private readonly entries: LRUCache<string, ConnectOutcome> | undefined

  constructor(opts: HealthOptions) {
    // ttl 0 means "remember nothing": lru-cache would read it as "never expire".
    this.entries =
      opts.ttlMs > 0
        ? new LRUCache<string, ConnectOutcome>({
            max: opts.maxEntries,
            ttl: opts.ttlMs,
            ...(opts.perf ? { perf: opts.perf, ttlResolution: 0 } : {}),
          })
        : undefined
  }

  /** The newest outcome wins: a success after a failure clears the demotion. */
  record(address: string, family: Family, exchange: string | undefined, outcome: ConnectOutcome): void {
    if (!this.entries) return
    this.entries.set(addressKey(address), outcome)
    if (exchange) this.entries.set(familyKey(exchange, family), outcome)
  }

  addressFailed(address: string): boolean {
    return isFailure(this.entries?.get(addressKey(address)))
  }

  familyFailed(exchange: string, family: Family): boolean {
    return isFailure(this.entries?.get(familyKey(exchange, family)))
  }

  addressSlow(address: string): boolean {
    return Boolean(this.entries?.get(addressKey(address))?.slow)
  }

  familySlow(exchange: string, family: Family): boolean {
    return Boolean(this.entries?.get(familyKey(exchange, family))?.slow)
  }

  lookup(address: string): ConnectOutcome | undefined {
    return this.entries?.get(addressKey(address))
  }

  get size(): number {
    return this.entries?.size ?? 0
  }

  clear(): void {
    this.entries?.clear()
  }
}
