// When the race may begin while address lookups are still pending (RFC 8305 §3): as soon as
// the most preferred MX group that can still give an address has a usable one. When the
// address the plan would try first is of the family the group leads with (IPv6, unless a
// family rule, a sender-policy refusal or the health cache say otherwise) and not demoted, it
// starts at once; else the group's pending lookups get up to the Resolution Delay. A lookup
// still pending for a lower-preference host never holds back a more preferred one.

import type { Family } from './classify'
import type { Candidate } from './order'
import type { AddressLookup } from './resolve'

export interface RaceStartOptions {
  /** How long the group's pending lookups may hold back a start that is not the best one. */
  resolutionDelayMs: number
  /** The family these hosts of one preference lead with once both families answered. */
  leadingFamily(exchanges: readonly string[], preference: number): Family
  /** An address the health cache puts behind the others of its group. */
  demoted?(address: string): boolean
}

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
  const hosts = [...new Set(group.map((c) => c.exchange))]
  if (!lookups.some((l) => !l.answer && hosts.includes(l.exchange))) return earliest
  const [first] = group
  const best = first.family === opts.leadingFamily(hosts, lead) && !opts.demoted?.(first.address)
  return best ? earliest : earliest + opts.resolutionDelayMs
}
