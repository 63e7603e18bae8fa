// When the race may begin while address lookups are still pending (RFC 8305 §3): as soon as
// the most preferred MX group that can still give an address has a usable one. An address of
// the preferred family starts it at once; one of the other family waits up to the Resolution
// Delay for the preferred family's answer of the same host. A lookup still pending for a
// lower-preference host never holds back a more preferred one.

import type { Family } from './classify'
import type { Candidate } from './order'
import type { AddressLookup, AddressType } from './resolve'

export interface RaceStartOptions {
  prefer: Family
  /** How long an answer of the other family waits for the preferred family's (RFC 8305 §3). */
  resolutionDelayMs: number
}

const TYPE_OF: Record<Family, AddressType> = { ipv6: 'AAAA', ipv4: 'A' }

/**
 * The preference of the most preferred MX group that can still give an address: its hosts
 * have a kept address or a lookup pending. Undefined when no group can.
 */
export function leadingPreference(
  lookups: readonly AddressLookup[],
  kept: readonly Candidate[],
): number | undefined {
  const open = [
    ...kept.map((c) => c.preference),
    ...lookups.filter((l) => !l.answer).map((l) => l.preference),
  ]
  return open.length ? Math.min(...open) : undefined
}

/**
 * The time (on the clock of `answeredAt`) at which the race may start with `kept`, the plan
 * of what has answered so far; at or before `now` means at once. Undefined: not yet, the
 * leading group has no usable address so far.
 */
export function raceStartAt(
  lookups: readonly AddressLookup[],
  kept: readonly Candidate[],
  answeredAt: (lookup: AddressLookup) => number | undefined,
  opts: RaceStartOptions,
): number | undefined {
  const lead = leadingPreference(lookups, kept)
  if (lead === undefined) return undefined
  const group = kept.filter((c) => c.preference === lead)
  if (!group.length) return undefined
  const earliest = Math.min(
    ...lookups.filter((l) => l.preference === lead).map((l) => answeredAt(l) ?? Infinity),
  )
  if (group.some((c) => c.family === opts.prefer)) return earliest
  const hosts = new Set(group.map((c) => c.exchange))
  const awaited = lookups.some((l) => !l.answer && hosts.has(l.exchange) && l.type === TYPE_OF[opts.prefer])
  return awaited ? earliest + opts.resolutionDelayMs : earliest
}
