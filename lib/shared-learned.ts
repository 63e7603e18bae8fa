// What races teach beside the health cache, shared through the store as SharedKinds
// (lib/shared-health): learnt connect times per MX host and family, and this host's IPv6
// egress evidence.
// - Connect times (`t:<mx host>|<family>`): the MX host's own smoothed estimate, the newest
//   one winning, TTL the connect times' (the cache TTL). This host's per-family estimate (the
//   fallback for MX hosts nobody measured) stays in the process: it describes this process's
//   own traffic and is rebuilt from a few races.
// - Egress (`e:<host name>`): the evidence of one host's IPv6 egress, shared by that host's
//   workers only (another host's egress is another path), TTL the window. Written only when
//   it says something about IPv6 (an unanswered attempt, an IPv4 connect where IPv6 went
//   unanswered, the first IPv6 success after evidence), so the happy path writes nothing.
// Values are short JSON arrays; anything else under these keys is ignored.

import { hostname } from 'node:os'

import type { Family } from './classify'
import { ConnectTimes, type ConnectSample, type ConnectTimesOptions, type OwnEstimate } from './connect-times'
import {
  type EgressEvent,
  type EgressEvidence,
  EgressMemory,
  type EgressOptions,
  type Evidence,
} from './egress'
import { exchangeId, type SharedKind, type SharedState } from './shared-health'

const FAMILIES: readonly Family[] = ['ipv6', 'ipv4']
const isFamily = (f: string): f is Family => f === 'ipv6' || f === 'ipv4'
const finite = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n)
const tenth = (n: number): number => Math.round(n * 10) / 10

/** `[srttMs, rttvarMs, samples, at]`. */
export function encodeEstimate(e: OwnEstimate): string {
  return JSON.stringify([tenth(e.srttMs), tenth(e.rttvarMs), e.samples, e.at])
}

export function decodeEstimate(text: string): OwnEstimate | undefined {
  const v = JSON.parse(text) as unknown
  if (!Array.isArray(v) || v.length < 4) return undefined
  const [srttMs, rttvarMs, samples, at] = v as unknown[]
  if (!finite(srttMs) || !finite(rttvarMs) || !finite(samples) || !finite(at)) return undefined
  if (srttMs < 0 || rttvarMs < 0 || samples < 1) return undefined
  return { srttMs, rttvarMs, samples: Math.floor(samples), at }
}

/** Connect times whose MX host estimates are shared, and filled from what others shared. */
export class SharingConnectTimes extends ConnectTimes {
  private sharedState?: SharedState

  readonly sharedTimes: SharedKind<OwnEstimate> = {
    tag: 't',
    ttlMs: () => this.ttlMs,
    idsFor: (r) => r.exchanges.flatMap((x) => FAMILIES.map((f) => `${exchangeId(x)}|${f}`)),
    encode: encodeEstimate,
    decode: decodeEstimate,
    fill: (id, v, now) => {
      const bar = id.lastIndexOf('|')
      const family = id.slice(bar + 1)
      return isFamily(family) && this.fill(id.slice(0, bar), family, v, now)
    },
  }

  constructor(opts: ConnectTimesOptions) {
    super(opts)
  }

  shareThrough(shared: SharedState | undefined): void {
    this.sharedState = shared
    shared?.add(this.sharedTimes)
  }

  override record(s: ConnectSample): void {
    super.record(s)
    if (!this.sharedState) return
    const own = this.own(s.exchange, s.family)
    if (own) this.sharedState.share(this.sharedTimes, `${exchangeId(s.exchange)}|${s.family}`, own)
  }
}

/** The most MX hosts of evidence one shared egress record carries. */
export const SHARED_EVIDENCE_MAX = 64

/** `[clearedAt or 0, [mx host, v6 unanswered at or 0, v4 connected at or 0], …]`. */
export function encodeEvidence(e: EgressEvidence): string {
  return JSON.stringify([
    e.clearedAt ?? 0,
    ...e.hosts.map(([x, v]) => [x, v.v6UnansweredAt ?? 0, v.v4ConnectedAt ?? 0]),
  ])
}

export function decodeEvidence(text: string): EgressEvidence | undefined {
  const v = JSON.parse(text) as unknown
  if (!Array.isArray(v) || !finite(v[0])) return undefined
  const hosts: EgressEvidence['hosts'] = []
  for (const h of v.slice(1) as unknown[]) {
    if (!Array.isArray(h) || typeof h[0] !== 'string') continue
    const [exchange, v6, v4] = h as [string, unknown, unknown]
    const evidence: Evidence = {
      ...(finite(v6) && v6 > 0 ? { v6UnansweredAt: v6 } : {}),
      ...(finite(v4) && v4 > 0 ? { v4ConnectedAt: v4 } : {}),
    }
    hosts.push([exchange, evidence])
  }
  return { ...(v[0] > 0 ? { clearedAt: v[0] } : {}), hosts }
}

export interface SharingEgressOptions extends EgressOptions {
  /** Whose egress this is: the key's id (os.hostname() by default). */
  host?: string
}

/** Egress memory whose evidence this host's workers share. */
export class SharingEgressMemory extends EgressMemory {
  private sharedState?: SharedState
  readonly host: string

  readonly sharedEvidence: SharedKind<EgressEvidence> = {
    tag: 'e',
    ttlMs: () => this.windowMs,
    idsFor: () => [this.host],
    encode: encodeEvidence,
    decode: decodeEvidence,
    fill: (id, v, now) => id === this.host && this.merge(v, now),
  }

  constructor(opts: SharingEgressOptions) {
    super(opts)
    this.host = (opts.host ?? hostname()).toLowerCase()
  }

  shareThrough(shared: SharedState | undefined): void {
    this.sharedState = shared
    shared?.add(this.sharedEvidence)
  }

  override record(e: EgressEvent): void {
    const shared = this.sharedState
    if (!shared) return super.record(e)
    const hadIpv6Evidence =
      e.family === 'ipv6' &&
      e.outcome === 'connected' &&
      this.evidenceOf().hosts.some(([, v]) => v.v6UnansweredAt !== undefined)
    super.record(e)
    const tells =
      e.family === 'ipv6'
        ? e.outcome === 'unanswered' || hadIpv6Evidence
        : e.outcome === 'connected' && this.evidenceFor(e.exchange)?.v6UnansweredAt !== undefined
    if (tells) shared.share(this.sharedEvidence, this.host, this.evidenceOf(SHARED_EVIDENCE_MAX))
  }
}
