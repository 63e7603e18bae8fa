// The RFC 8305 §4 address order, inside RFC 5321 MX preference: groups by preference
// ascending, hosts of equal preference shuffled, families interleaved inside a group.

import type { Family } from './classify'
import type { HealthView } from './health'

export interface Candidate {
  address: string
  family: Family
  /** MX host name the address came from (the domain itself for an implicit MX). */
  exchange: string
  preference: number
}

export interface OrderOptions {
  prefer: Family
  firstFamilyCount: number
  maxAddresses: number
  /** Source of randomness for the shuffle of equal-preference hosts; [0, 1). */
  random?: () => number
  health?: HealthView
  /** A family rule's leading family for some MX hosts ([family] prefer_ipv4/prefer_ipv6). */
  hostPrefer?: ReadonlyMap<string, Family>
  /** This host's IPv6 egress (lib/egress): impaired, new destinations start with IPv4. */
  egress?: EgressLead
}

export interface EgressLead {
  ipv6Impaired: boolean
  /** Whether an MX host has data of its own (connect times), so it is no new destination. */
  known(exchange: string): boolean
}

/** What the order did besides RFC 8305 §4, for the record. */
export interface OrderNotes {
  /** MX hosts whose group starts with IPv4 because this host's IPv6 egress is impaired. */
  ipv4FirstForEgress: string[]
}

const other = (f: Family): Family => (f === 'ipv6' ? 'ipv4' : 'ipv6')

/** A seeded random source (mulberry32) for the shuffle: the same seed, the same plan. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function shuffle<T>(items: T[], random: () => number): T[] {
  const out = items.slice()
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[out[i], out[j]] = [out[j], out[i]]
  }
  return out
}

/** RFC 8305 §4: `firstCount` of the first family, then one of each in turn. */
export function interleaveFamilies<T>(first: T[], second: T[], firstCount: number): T[] {
  const out = first.slice(0, firstCount)
  let i = out.length
  let j = 0
  while (i < first.length || j < second.length) {
    if (j < second.length) out.push(second[j++])
    if (i < first.length) out.push(first[i++])
  }
  return out
}

/** 2 failed recently, 1 lost a race without answering (slow), 0 nothing against it. */
function addressDemotion(address: string, health: HealthView): number {
  if (health.addressFailed(address)) return 2
  return health.addressSlow?.(address) ? 1 : 0
}

const familyDemoted = (health: HealthView, exchange: string, family: Family): boolean =>
  health.familyFailed(exchange, family) || Boolean(health.familySlow?.(exchange, family))

/**
 * The family to start a group with: the preferred one, unless it failed or was slow
 * recently for every host of the group that has it while the other family was not, for
 * all of its hosts.
 */
function leadingFamily(group: Candidate[], prefer: Family, opts: OrderOptions, notes?: OrderNotes): Family {
  const lead = healthLead(group, prefer, opts.health)
  if (lead !== 'ipv6' || !opts.egress?.ipv6Impaired || !group.some((c) => c.family === 'ipv4')) return lead
  // Impaired IPv6 egress: a group of new destinations (no data of their own) starts with IPv4.
  const hosts = [...new Set(group.map((c) => c.exchange))]
  const { health, egress } = opts
  const knownHost = (h: string): boolean =>
    egress.known(h) || Boolean(health && (['ipv6', 'ipv4'] as const).some((f) => familyDemoted(health, h, f)))
  if (hosts.some(knownHost)) return lead
  notes?.ipv4FirstForEgress.push(...hosts)
  return 'ipv4'
}

/** Whether `family` failed or was slow for every host of the group that has it (and one has). */
function demotedEverywhere(group: Candidate[], family: Family, health: HealthView): boolean {
  let any = false
  for (const c of group) {
    if (c.family !== family) continue
    any = true
    if (!familyDemoted(health, c.exchange, family)) return false
  }
  return any
}

function healthLead(group: Candidate[], prefer: Family, health: HealthView | undefined): Family {
  if (!health) return prefer
  const alt = other(prefer)
  const altPresent = group.some((c) => c.family === alt)
  return demotedEverywhere(group, prefer, health) && altPresent && !demotedEverywhere(group, alt, health)
    ? alt
    : prefer
}

/** The group's preferred family: what the family rules of its hosts agree on, else `prefer`. */
function groupPrefer(group: Candidate[], opts: OrderOptions): Family {
  const { hostPrefer } = opts
  if (!hostPrefer?.size) return opts.prefer
  const wanted = new Set(
    group.map((c) => hostPrefer.get(c.exchange)).filter((f): f is Family => f !== undefined),
  )
  return wanted.size === 1 ? [...wanted][0] : opts.prefer
}

/** The group's hosts in shuffled order; one host (the common case) needs no shuffle. */
function byShuffledHost(group: Candidate[], random: () => number): Candidate[] {
  const first = group[0]?.exchange
  if (group.every((c) => c.exchange === first)) return group
  const hostOrder = shuffle([...new Set(group.map((c) => c.exchange))], random)
  const byHost = (c: Candidate): number => hostOrder.indexOf(c.exchange)
  return group.slice().sort((a, b) => byHost(a) - byHost(b))
}

function orderGroup(
  group: Candidate[],
  opts: OrderOptions,
  random: () => number,
  notes?: OrderNotes,
): Candidate[] {
  const sorted = byShuffledHost(group, random)
  const lead = leadingFamily(group, groupPrefer(group, opts), opts, notes)
  const ordered = interleaveFamilies(
    sorted.filter((c) => c.family === lead),
    sorted.filter((c) => c.family !== lead),
    opts.firstFamilyCount,
  )
  // Slow addresses go behind the others of their group, recently failed ones last; never away.
  const { health } = opts
  if (!health) return ordered
  const rank = ordered.map((c) => addressDemotion(c.address, health))
  if (rank.every((r) => r === 0)) return ordered
  const at = new Map(ordered.map((c, i) => [c, rank[i]]))
  return ordered.slice().sort((a, b) => (at.get(a) as number) - (at.get(b) as number))
}

/** Keeps the first `max`, but never drops the last address of a family that has one. */
export function capKeepingFamilies(list: Candidate[], max: number): Candidate[] {
  if (list.length <= max) return list
  const kept = list.slice(0, max)
  for (const family of ['ipv6', 'ipv4'] as const) {
    if (kept.some((c) => c.family === family)) continue
    const missing = list.find((c) => c.family === family)
    if (!missing) continue
    // Replace the last entry of the other family, which has at least two here.
    for (let i = kept.length - 1; i >= 0; i--) {
      if (kept[i].family !== family) {
        kept.splice(i, 1)
        break
      }
    }
    kept.push(missing)
  }
  return kept
}

export function orderCandidates(
  candidates: Candidate[],
  opts: OrderOptions,
  notes?: OrderNotes,
): Candidate[] {
  const random = opts.random ?? Math.random
  const byPreference = candidates.slice().sort((a, b) => a.preference - b.preference)

  const seen = new Set<string>()
  const unique = byPreference.filter((c) => !seen.has(c.address) && Boolean(seen.add(c.address)))

  const groups = new Map<number, Candidate[]>()
  for (const c of unique) {
    const g = groups.get(c.preference)
    if (g) g.push(c)
    else groups.set(c.preference, [c])
  }

  const ordered = [...groups.values()].flatMap((g) => orderGroup(g, opts, random, notes))
  return capKeepingFamilies(ordered, Math.max(2, opts.maxAddresses))
}
