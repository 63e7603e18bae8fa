// This host's IPv6 egress, judged across destinations: when IPv6 went unanswered (timed out,
// or lost a race without answering after a whole attempt delay) at several distinct MX hosts
// while IPv4 to the same hosts worked, the trouble is on this side. New destinations then start
// with IPv4; IPv6 is still raced second, and its first success anywhere clears the state.
// A refusal (RST) proves IPv6 packets get out and back: it neither counts nor clears.
// Bounded like the health cache: an LRU with a size limit and the window as TTL.

import { LRUCache } from 'lru-cache'

import type { Family } from './classify'

/** What one attempt said about egress: plain data, so it can be shared between processes. */
export interface EgressEvent {
  exchange: string
  family: Family
  outcome: 'unanswered' | 'connected'
  /** Epoch ms. */
  at: number
}

/** The state as plain data: for the record, the log and the command. */
export interface EgressState {
  ipv6Impaired: boolean
  /** MX hosts where IPv6 went unanswered while IPv4 worked, within the window. */
  destinations: string[]
  /** Epoch ms when the state last changed. */
  since?: number
}

export interface EgressOptions {
  /** Distinct MX hosts needed; 0 never marks egress impaired. */
  destinations: number
  windowMs: number
  maxEntries: number
  /** Clock for the LRU's TTL in tests; performance.now via lru-cache by default. */
  perf?: { now(): number }
  /** Called once per change of ipv6Impaired. */
  onChange?(state: EgressState): void
}

/** What is known about one MX host within the window (epoch ms). */
export interface Evidence {
  v6UnansweredAt?: number
  v4ConnectedAt?: number
}

/** The evidence as plain data, so it can be shared between this host's processes. */
export interface EgressEvidence {
  /** Epoch ms of the last IPv6 success: evidence before it is void. */
  clearedAt?: number
  hosts: Array<[exchange: string, evidence: Evidence]>
}

/** The most MX hosts kept as evidence, whatever [cache] max_entries allows. */
export const EVIDENCE_MAX = 512

const key = (exchange: string): string => exchange.toLowerCase().replace(/\.$/, '')

export class EgressMemory {
  private readonly evidence: LRUCache<string, Evidence> | undefined
  private impaired = false
  private since: number | undefined
  private clearedAt: number | undefined
  /** Epoch ms of the latest recheck claimed, and whether one is under way. */
  private recheckAt: number | undefined
  private rechecking = false
  readonly windowMs: number

  constructor(private readonly opts: EgressOptions) {
    this.windowMs = opts.windowMs
    this.evidence =
      opts.destinations > 0 && opts.windowMs > 0
        ? new LRUCache<string, Evidence>({
            // Read on every message: a few hundred recent hosts say all there is to say.
            max: Math.max(opts.destinations, Math.min(opts.maxEntries, EVIDENCE_MAX)),
            ttl: opts.windowMs,
            ...(opts.perf ? { perf: opts.perf, ttlResolution: 0 } : {}),
          })
        : undefined
  }

  record(e: EgressEvent): void {
    if (!this.evidence) return
    if (e.family === 'ipv6' && e.outcome === 'connected') {
      // IPv6 works from here again: every piece of evidence against it is void. Only a
      // memory that holds some is cleared: lru-cache's clear() is O(max), and this runs on
      // every IPv6 success.
      if (this.evidence.size) this.evidence.clear()
      this.clearedAt = Math.max(this.clearedAt ?? e.at, e.at)
      this.settle(e.at)
      return
    }
    const k = key(e.exchange)
    const entry: Evidence = { ...this.evidence.get(k) }
    if (e.family === 'ipv6') entry.v6UnansweredAt = e.at
    else if (e.outcome === 'connected') entry.v4ConnectedAt = e.at
    else return
    this.evidence.set(k, entry)
    this.settle(e.at)
  }

  /**
   * Claims a recheck of impaired IPv6 egress (./egress-recheck): true at most once per
   * `intervalMs` and never while one is under way; false when egress is not impaired.
   */
  claimRecheck(intervalMs: number, at = Date.now()): boolean {
    if (intervalMs <= 0 || this.rechecking || !this.read(at).ipv6Impaired) return false
    if (this.recheckAt !== undefined && at - this.recheckAt < intervalMs) return false
    this.rechecking = true
    this.recheckAt = at
    return true
  }

  /** The claimed recheck is over, whatever it found. */
  endRecheck(): void {
    this.rechecking = false
  }

  /** The state now; an expired window clears it (and reports the change). */
  read(at = Date.now()): EgressState {
    const destinations = this.settle(at)
    return {
      ipv6Impaired: this.impaired,
      destinations,
      ...(this.since !== undefined ? { since: this.since } : {}),
    }
  }

  private settle(at: number): string[] {
    const destinations: string[] = []
    if (this.evidence?.size) {
      for (const [k, v] of this.evidence.entries()) {
        if (v.v6UnansweredAt !== undefined && v.v4ConnectedAt !== undefined) destinations.push(k)
      }
    }
    const impaired = destinations.length >= this.opts.destinations && this.opts.destinations > 0
    if (impaired !== this.impaired) {
      this.impaired = impaired
      this.since = at
      this.opts.onChange?.({ ipv6Impaired: impaired, destinations, since: at })
    }
    return destinations
  }

  /** The evidence about one MX host, if any (its recency untouched). */
  evidenceFor(exchange: string): Evidence | undefined {
    return this.evidence?.peek(key(exchange))
  }

  /** The evidence kept, newest first, at most `max` MX hosts: what another process can take. */
  evidenceOf(max = EVIDENCE_MAX): EgressEvidence {
    const hosts: EgressEvidence['hosts'] = []
    for (const [k, v] of this.evidence?.entries() ?? []) {
      if (hosts.length >= max) break
      hosts.push([k, { ...v }])
    }
    return { ...(this.clearedAt !== undefined ? { clearedAt: this.clearedAt } : {}), hosts }
  }

  /**
   * Takes evidence from another process of this host: a later IPv6 success voids what is
   * older here, the newest time of each kind wins, nothing older than the window is taken.
   * Returns whether anything changed.
   */
  merge(other: EgressEvidence, now = Date.now()): boolean {
    const evidence = this.evidence
    if (!evidence) return false
    let changed = false
    const cleared = Math.max(this.clearedAt ?? -Infinity, other.clearedAt ?? -Infinity)
    if (other.clearedAt !== undefined && other.clearedAt > (this.clearedAt ?? -Infinity)) {
      this.clearedAt = other.clearedAt
      for (const [k, v] of [...evidence.entries()]) {
        const kept = valid(v, cleared, now - this.opts.windowMs)
        if (kept.v6UnansweredAt === v.v6UnansweredAt && kept.v4ConnectedAt === v.v4ConnectedAt) continue
        changed = true
        if (kept.v6UnansweredAt === undefined && kept.v4ConnectedAt === undefined) evidence.delete(k)
        else evidence.set(k, kept, { noUpdateTTL: true })
      }
    }
    for (const [exchange, theirs] of other.hosts) {
      const k = key(exchange)
      const incoming = valid(theirs, cleared, now - this.opts.windowMs)
      const mine = evidence.get(k) ?? {}
      const v6 = newest(mine.v6UnansweredAt, incoming.v6UnansweredAt)
      const v4 = newest(mine.v4ConnectedAt, incoming.v4ConnectedAt)
      if (v6 === mine.v6UnansweredAt && v4 === mine.v4ConnectedAt) continue
      const newestAt = Math.max(v6 ?? -Infinity, v4 ?? -Infinity)
      evidence.set(
        k,
        {
          ...(v6 !== undefined ? { v6UnansweredAt: v6 } : {}),
          ...(v4 !== undefined ? { v4ConnectedAt: v4 } : {}),
        },
        { ttl: Math.max(1, Math.min(this.opts.windowMs, newestAt + this.opts.windowMs - now)) },
      )
      changed = true
    }
    if (changed) this.settle(now)
    return changed
  }

  clear(): void {
    this.evidence?.clear()
    this.impaired = false
    this.since = undefined
    this.clearedAt = undefined
    this.recheckAt = undefined
  }
}

const newest = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined ? b : b === undefined ? a : Math.max(a, b)

/** The times of `e` after the last IPv6 success and within the window. */
function valid(e: Evidence, clearedAt: number, oldest: number): Evidence {
  const ok = (t: unknown): t is number =>
    typeof t === 'number' && Number.isFinite(t) && t > clearedAt && t > oldest
  return {
    ...(ok(e.v6UnansweredAt) ? { v6UnansweredAt: e.v6UnansweredAt } : {}),
    ...(ok(e.v4ConnectedAt) ? { v4ConnectedAt: e.v4ConnectedAt } : {}),
  }
}

/** `IPv6 egress impaired since …: unanswered at a, b, c while IPv4 worked` — the log line. */
export function describeEgress(state: EgressState): string {
  if (!state.ipv6Impaired) return 'IPv6 egress works again: new destinations start with the preferred family'
  return (
    `IPv6 egress impaired: unanswered at ${state.destinations.join(', ')} while IPv4 worked; ` +
    'new destinations start with IPv4, IPv6 still raced second'
  )
}
