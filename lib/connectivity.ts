// Which address families this host can send from (Happy Eyeballs v3): a family without a
// usable source address is neither queried nor tried. Read from the host's interfaces (an
// injectable view, os.networkInterfaces by default), again at most every check interval, so
// an address added later is used.
//
// "Usable" depends on where a connection goes:
//  - to a loopback destination: a loopback address of the family (tests deliver to ::1);
//  - to a global destination: a global source; for IPv4 a private or CGN one as well (NAT is
//    the normal IPv4 egress), for IPv6 only a global one (a unique-local source has no route
//    to the internet without NAT66, which is rare);
//  - to any other destination an `allow` entry let through (unique-local, private): any
//    source that is neither loopback nor link-local.
// A configured `[bind]` address decides alone for its family: usable while it is on an
// interface. When neither family is usable towards a destination, nothing is known (a host
// with policy routing, a view that failed): both are used, as stock Haraka would.

import os from 'node:os'

import ipaddr from 'ipaddr.js'
import { LRUCache } from 'lru-cache'

import type { Family } from './classify'

/** What os.networkInterfaces() returns. */
export type InterfaceList = NodeJS.Dict<os.NetworkInterfaceInfo[]>

export type SourceScope = 'global' | 'private' | 'loopback' | 'link-local'

export interface FamilySources {
  /** The scopes of this family's addresses on the host's interfaces. */
  scopes: SourceScope[]
  /** The configured [bind] address of the family, and whether an interface holds it. */
  bind?: { address: string; present: boolean }
}

/** One reading of the host's interfaces: plain data, for the record and the log. */
export interface HostFamilies {
  ipv4: FamilySources
  ipv6: FamilySources
  /** The view could not be read: every family is taken as usable. */
  unreadable?: string
}

export const FAMILIES: readonly Family[] = ['ipv6', 'ipv4']

const familyName = (f: Family): string => (f === 'ipv6' ? 'IPv6' : 'IPv4')

type Parsed = ipaddr.IPv4 | ipaddr.IPv6

function parse(address: string): Parsed | undefined {
  try {
    const ip = ipaddr.parse(address.replace(/%.*$/, ''))
    return ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress()
      ? (ip as ipaddr.IPv6).toIPv4Address()
      : ip
  } catch {
    return undefined
  }
}

/**
 * Scopes of address texts seen lately: every plan of a message asks for each of its addresses,
 * and a busy queue sends the same few again and again. Bounded, least recently used out first.
 */
const SCOPE_CACHE_MAX = 4096
/** What the cache keeps for a text that is no address (an LRU holds no undefined). */
const NO_SCOPE = Symbol('no scope')
const scopeCache = new LRUCache<string, SourceScope | typeof NO_SCOPE>({
  max: SCOPE_CACHE_MAX,
  memoMethod: (address) => computeScope(address) ?? NO_SCOPE,
})

/** The scope an address has as a source or a destination; undefined when it is no address. */
export function scopeOf(address: string): SourceScope | undefined {
  const scope = scopeCache.memo(address)
  return scope === NO_SCOPE ? undefined : scope
}

function computeScope(address: string): SourceScope | undefined {
  const ip = parse(address)
  if (!ip) return undefined
  const range = ip.range()
  if (range === 'loopback') return 'loopback'
  if (range === 'linkLocal') return 'link-local'
  if (range === 'unicast') return 'global'
  return 'private'
}

const familyOfInfo = (info: os.NetworkInterfaceInfo): Family | undefined => {
  // Node 18.0-18.3 reported family as a number.
  const f: unknown = info.family
  if (f === 'IPv4' || f === 4) return 'ipv4'
  if (f === 'IPv6' || f === 6) return 'ipv6'
  return undefined
}

const sameAddress = (a: string, b: string): boolean => {
  const x = parse(a)
  const y = parse(b)
  return Boolean(x && y && x.kind() === y.kind() && x.toString() === y.toString())
}

/** The host's families from one interface list and the configured binds. */
export function readHostFamilies(list: InterfaceList, bind: { ipv4?: string; ipv6?: string }): HostFamilies {
  const out: HostFamilies = { ipv4: { scopes: [] }, ipv6: { scopes: [] } }
  const addresses: Array<{ family: Family; address: string }> = []
  for (const infos of Object.values(list)) {
    for (const info of infos ?? []) {
      const family = familyOfInfo(info)
      if (!family || typeof info.address !== 'string') continue
      addresses.push({ family, address: info.address })
      const scope = scopeOf(info.address)
      if (scope && !out[family].scopes.includes(scope)) out[family].scopes.push(scope)
    }
  }
  for (const family of FAMILIES) {
    const address = bind[family]
    if (!address) continue
    const present = addresses.some((a) => a.family === family && sameAddress(a.address, address))
    out[family].bind = { address, present }
  }
  return out
}

/**
 * Why `family` cannot reach a destination of scope `dest` from this host, or undefined when
 * it can. Does not apply the "neither family: use both" rule; see unusableReason.
 */
function familyBlocked(
  host: HostFamilies,
  family: Family,
  dest: SourceScope | undefined,
): string | undefined {
  const sources = host[family]
  if (sources.bind) {
    return sources.bind.present
      ? undefined
      : `no ${familyName(family)} connectivity: bind address ${sources.bind.address} is on no interface`
  }
  const has = (...scopes: SourceScope[]): boolean => scopes.some((s) => sources.scopes.includes(s))
  const none = `no ${familyName(family)} connectivity`
  if (dest === 'loopback') return has('loopback') ? undefined : `${none}: no ${familyName(family)} loopback`
  if (dest === 'global') {
    if (family === 'ipv6') return has('global') ? undefined : `${none}: no global IPv6 address`
    return has('global', 'private') ? undefined : `${none}: no IPv4 address but loopback/link-local`
  }
  return has('global', 'private')
    ? undefined
    : `${none}: no ${familyName(family)} address but loopback/link-local`
}

const otherFamily = (f: Family): Family => (f === 'ipv6' ? 'ipv4' : 'ipv6')

/**
 * Whether some destination could be unusable from this host: false for a dual-stack host with
 * global addresses of both families and no [bind] (then nothing needs checking per address).
 */
export function mayLimit(host: HostFamilies): boolean {
  if (host.unreadable) return false
  return FAMILIES.some((f) => host[f].bind !== undefined || !host[f].scopes.includes('global'))
}

/**
 * Why this host cannot connect to `destination` over its family, or undefined when it can
 * (or nothing is known: the view was unreadable, or neither family could reach a destination
 * of that scope, in which case both are used).
 */
export function unusableReason(host: HostFamilies, family: Family, destination: string): string | undefined {
  if (host.unreadable) return undefined
  const dest = scopeOf(destination)
  const blocked = familyBlocked(host, family, dest)
  if (!blocked) return undefined
  // The same destination scope over the other family (loopback ↔ loopback, global ↔ global).
  return familyBlocked(host, otherFamily(family), dest === 'loopback' ? 'loopback' : 'global')
    ? undefined
    : blocked
}

/**
 * The families worth a DNS query: those that can reach some destination the filter lets
 * through. `loopbackAllowed(f)` says whether the filter permits loopback addresses of f
 * (tests and local relays); without it only non-loopback destinations count. Both when
 * neither would be queried.
 */
export function familiesToQuery(host: HostFamilies, loopbackAllowed: (f: Family) => boolean): QueryPlan {
  const both: QueryPlan = { families: FAMILIES.slice(), notQueried: [] }
  if (host.unreadable) return both
  const reachable = (f: Family): boolean =>
    !familyBlocked(host, f, 'global') ||
    !familyBlocked(host, f, 'private') ||
    (loopbackAllowed(f) && !familyBlocked(host, f, 'loopback'))
  const families = FAMILIES.filter(reachable)
  if (!families.length) return both
  const notQueried = FAMILIES.filter((f) => !families.includes(f)).map((family) => ({
    family,
    reason: familyBlocked(host, family, 'global') ?? `no ${familyName(family)} connectivity`,
  }))
  return { families, notQueried }
}

export interface QueryPlan {
  families: Family[]
  /** The families left out, with why. */
  notQueried: Array<{ family: Family; reason: string }>
}

/** `IPv4 global, loopback; IPv6 loopback` — for the log line on a change. */
export function describeHostFamilies(host: HostFamilies): string {
  if (host.unreadable) return `interfaces unreadable (${host.unreadable}): both families used`
  return FAMILIES.slice()
    .reverse()
    .map((f) => {
      const s = host[f]
      const scopes = s.scopes.length ? s.scopes.join(', ') : 'no address'
      const bind = s.bind ? `, bind ${s.bind.address} ${s.bind.present ? 'present' : 'absent'}` : ''
      return `${familyName(f)} ${scopes}${bind}`
    })
    .join('; ')
}

export interface ConnectivityOptions {
  bind: { ipv4?: string; ipv6?: string }
  /** Read again after this long; 0 reads once. */
  checkEveryMs: number
  /** The host's interfaces; os.networkInterfaces by default. */
  interfaces?: () => InterfaceList
  /** Clock for tests (ms); performance.now by default. */
  now?: () => number
  /** Called with the first reading and every reading that differs from the one before. */
  onChange?(host: HostFamilies, previous: HostFamilies | undefined): void
}

/** The host's families, read on demand and again once the check interval has passed. */
export class HostConnectivity {
  private host: HostFamilies | undefined
  private shown = ''
  private readAt = -Infinity

  constructor(private readonly opts: ConnectivityOptions) {}

  current(): HostFamilies {
    const now = (this.opts.now ?? performance.now.bind(performance))()
    if (this.host && (this.opts.checkEveryMs <= 0 || now - this.readAt < this.opts.checkEveryMs))
      return this.host
    this.readAt = now
    let next: HostFamilies
    try {
      next = readHostFamilies((this.opts.interfaces ?? os.networkInterfaces)(), this.opts.bind)
    } catch (err) {
      next = { ipv4: { scopes: [] }, ipv6: { scopes: [] }, unreadable: String(err) }
    }
    const shown = JSON.stringify(next)
    const previous = this.host
    this.host = next
    if (shown !== this.shown) {
      this.shown = shown
      this.opts.onChange?.(next, previous)
    }
    return next
  }
}
