// Measured TCP connect times, per (MX host, family) and per family for the whole host, and the
// Connection Attempt Delay learnt from them (RFC 8305 §5 allows "a more nuanced" delay from
// round-trip times, as Safari does). Smoothing as TCP does it (RFC 6298): SRTT and RTTVAR with
// gains 1/8 and 1/4. The delay is 2 × SRTT + 4 × RTTVAR: RFC 6298's retransmission timeout
// (SRTT + 4 × RTTVAR) with room for one more round trip, since an answer later than that
// rarely comes; clamped to [min, max], and max when nothing is known.
// Bounded like the health cache: an LRU with a size limit and a TTL.

import { LRUCache } from 'lru-cache'

import type { Family } from './classify'

/** One measured connect: plain data, so it can be shared between processes. */
export interface ConnectSample {
  exchange: string
  family: Family
  /** From the attempt's start to its TCP connect. */
  connectMs: number
  /** Epoch ms of the connect; now by default. */
  at?: number
}

/** A smoothed connect time, and whether it is the MX host's own or this host's for the family. */
export interface ConnectEstimate {
  srttMs: number
  rttvarMs: number
  samples: number
  of: 'mx' | 'host'
}

export interface ConnectTimesOptions {
  ttlMs: number
  maxEntries: number
  /** Clock for tests; performance.now via lru-cache by default. */
  perf?: { now(): number }
}

export interface DelayBounds {
  minMs: number
  maxMs: number
}

type Smoothed = Omit<ConnectEstimate, 'of'>

/** An MX host's own smoothed connect time and when its last sample was taken (epoch ms). */
export interface OwnEstimate extends Smoothed {
  at: number
}

const mxKey = (exchange: string, family: Family): string =>
  `m ${exchange.toLowerCase().replace(/\.$/, '')} ${family}`
const hostKey = (family: Family): string => `h ${family}`

const estimateOf = (e: OwnEstimate, of: ConnectEstimate['of']): ConnectEstimate => ({
  srttMs: e.srttMs,
  rttvarMs: e.rttvarMs,
  samples: e.samples,
  of,
})

/** RFC 6298 §2: the first sample sets SRTT = R, RTTVAR = R/2; later ones smooth. */
export function smooth(prev: Smoothed | undefined, r: number): Smoothed {
  if (!prev) return { srttMs: r, rttvarMs: r / 2, samples: 1 }
  const rttvarMs = 0.75 * prev.rttvarMs + 0.25 * Math.abs(prev.srttMs - r)
  const srttMs = 0.875 * prev.srttMs + 0.125 * r
  return { srttMs, rttvarMs, samples: prev.samples + 1 }
}

export class ConnectTimes {
  private readonly entries: LRUCache<string, OwnEstimate> | undefined
  readonly ttlMs: number

  constructor(opts: ConnectTimesOptions) {
    this.ttlMs = opts.ttlMs
    // ttl 0 means "remember nothing": lru-cache would read it as "never expire".
    this.entries =
      opts.ttlMs > 0
        ? new LRUCache<string, OwnEstimate>({
            max: opts.maxEntries,
            ttl: opts.ttlMs,
            ...(opts.perf ? { perf: opts.perf, ttlResolution: 0 } : {}),
          })
        : undefined
  }

  record(s: ConnectSample): void {
    if (!this.entries || !Number.isFinite(s.connectMs) || s.connectMs < 0) return
    const at = s.at ?? Date.now()
    for (const k of [mxKey(s.exchange, s.family), hostKey(s.family)])
      this.entries.set(k, { ...smooth(this.entries.get(k), s.connectMs), at })
  }

  /** The MX host's own estimate for the family, else this host's for the family. */
  read(exchange: string, family: Family): ConnectEstimate | undefined {
    const own = this.entries?.get(mxKey(exchange, family))
    if (own) return estimateOf(own, 'mx')
    const host = this.entries?.get(hostKey(family))
    return host ? estimateOf(host, 'host') : undefined
  }

  /** This host's estimate for the family, from every MX host's connects. */
  hostEstimate(family: Family): ConnectEstimate | undefined {
    const host = this.entries?.peek(hostKey(family))
    return host ? estimateOf(host, 'host') : undefined
  }

  /** The MX host's own estimate for the family with its time: what is shared. */
  own(exchange: string, family: Family): OwnEstimate | undefined {
    return this.entries?.get(mxKey(exchange, family))
  }

  /**
   * Takes an MX host's estimate learnt elsewhere unless the local one is as new; it expires
   * a TTL after its last sample. This host's own per-family estimate is left as it is.
   */
  fill(exchange: string, family: Family, estimate: OwnEstimate, now = Date.now()): boolean {
    const left = estimate.at + this.ttlMs - now
    if (!this.entries || left <= 0) return false
    const k = mxKey(exchange, family)
    const local = this.entries.get(k)
    if (local && local.at >= estimate.at) return false
    this.entries.set(k, { ...estimate }, { ttl: Math.min(this.ttlMs, left) })
    return true
  }

  /** Whether the MX host has connect times of its own (either family). */
  knows(exchange: string): boolean {
    return Boolean(this.entries?.has(mxKey(exchange, 'ipv6')) || this.entries?.has(mxKey(exchange, 'ipv4')))
  }

  get size(): number {
    return this.entries?.size ?? 0
  }

  clear(): void {
    this.entries?.clear()
  }
}

/** Never under 10 ms, whatever is configured: a shorter delay is a parallel connect. */
export const MIN_ATTEMPT_DELAY_FLOOR_MS = 10

/** The attempt delay from an estimate: 2 × SRTT + 4 × RTTVAR within the bounds; max unknown. */
export function learnedDelay(estimate: ConnectEstimate | undefined, bounds: DelayBounds): number {
  const max = Math.max(MIN_ATTEMPT_DELAY_FLOOR_MS, bounds.maxMs)
  const min = Math.min(max, Math.max(MIN_ATTEMPT_DELAY_FLOOR_MS, bounds.minMs))
  if (!estimate) return max
  const delay = Math.round(2 * estimate.srttMs + 4 * estimate.rttvarMs)
  return Math.min(max, Math.max(min, delay))
}
