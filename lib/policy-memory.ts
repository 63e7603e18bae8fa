// MX hosts that refused this sender over IPv6 by policy, remembered for `[policy] ttl_s` so
// the next messages go to their IPv4 addresses at once. Bounded like the health cache: an LRU
// with a size limit and a TTL.

import { LRUCache } from 'lru-cache'

export interface PolicyMemoryOptions {
  ttlMs: number
  maxEntries: number
  /** Clock for tests; defaults to performance.now via lru-cache. */
  perf?: { now(): number }
}

export interface RememberedRefusal {
  /** `IPv6 refused by policy at mx.example [2001:db8::1] (RCPT): 550 5.7.25 …` */
  refusal: string
  /** Epoch ms until which the host is taken as IPv4 only. */
  until: number
}

export interface PolicyView {
  ipv6Refused(exchange: string): RememberedRefusal | undefined
}

const key = (exchange: string): string => exchange.toLowerCase().replace(/\.$/, '')

export class PolicyMemory implements PolicyView {
  private readonly entries: LRUCache<string, RememberedRefusal> | undefined
  private readonly ttlMs: number

  constructor(opts: PolicyMemoryOptions) {
    this.ttlMs = opts.ttlMs
    // ttl 0 means "remember nothing": lru-cache would read it as "never expire".
    this.entries =
      opts.ttlMs > 0
        ? new LRUCache<string, RememberedRefusal>({
            max: opts.maxEntries,
            ttl: opts.ttlMs,
            ...(opts.perf ? { perf: opts.perf, ttlResolution: 0 } : {}),
          })
        : undefined
  }

  remember(exchange: string, refusal: string, now = Date.now()): void {
    this.entries?.set(key(exchange), { refusal, until: now + this.ttlMs })
  }

  ipv6Refused(exchange: string): RememberedRefusal | undefined {
    return this.entries?.get(key(exchange))
  }

  get size(): number {
    return this.entries?.size ?? 0
  }

  clear(): void {
    this.entries?.clear()
  }
}
