// Which MX addresses can carry mail at all. DNS answers come from strangers: an address
// is routable only if it is global unicast, or an operator's `allow` CIDR re-permits it.

import net from 'node:net'

import ipaddr from 'ipaddr.js'
import { LRUCache } from 'lru-cache'

export type Family = 'ipv4' | 'ipv6'

export interface RoutableAddress {
  routable: true
  /** The address as given (lower case, zone id removed). */
  input: string
  /** What to connect to: canonical text, an IPv4-mapped address unwrapped to its IPv4. */
  address: string
  family: Family
  /** The allow entry that re-permitted a special range, if one did. */
  allowedBy?: string
}

export interface FilteredAddress {
  routable: false
  input: string
  reason: string
}

export type Classification = RoutableAddress | FilteredAddress

type IP = ipaddr.IPv4 | ipaddr.IPv6

export interface Cidr {
  text: string
  range: [IP, number]
}

export interface FilterPolicy {
  /** CIDRs re-permitted although they lie in a special range (internal relays, tests). */
  allow: Cidr[]
  /** CIDRs and range names dropped although global. */
  blockCidrs: Cidr[]
  blockRanges: ReadonlySet<RangeName>
}

export const DEFAULT_POLICY: FilterPolicy = { allow: [], blockCidrs: [], blockRanges: new Set() }

// Named special ranges. An address takes the name of the most specific range holding it; a
// range listed here is filtered unless an `allow` CIDR re-permits the address. Reasons are
// what the operator reads in the log, so every name is ours, in kebab case.
const SPECIAL_RANGES = [
  ['unspecified', ['0.0.0.0/8', '::/128']],
  ['loopback', ['127.0.0.0/8', '::1/128']],
  ['broadcast', ['255.255.255.255/32']],
  ['private', ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16']],
  ['cgn', ['100.64.0.0/10']],
  ['link-local', ['169.254.0.0/16', 'fe80::/10']],
  ['documentation', ['192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24', '2001:db8::/32', '3fff::/20']],
  ['benchmarking', ['198.18.0.0/15', '2001:2::/48']],
  ['6to4', ['192.88.99.0/24', '2002::/16']],
  ['ietf-protocol', ['192.0.0.0/24']],
  ['multicast', ['224.0.0.0/4', 'ff00::/8']],
  // 2001::/23 is the IETF protocol assignments block; its named parts are listed on their own.
  ['reserved', ['240.0.0.0/4', '2001::/23']],
  ['ipv4-translated', ['::ffff:0:0:0/96']],
  ['ipv4-compatible', ['::/96']],
  ['nat64-local', ['64:ff9b:1::/48']],
  ['discard', ['100::/64']],
  ['teredo', ['2001::/32']],
  ['orchid', ['2001:10::/28', '2001:20::/28']],
  ['unique-local', ['fc00::/7']],
  ['site-local', ['fec0::/10']],
  ['as112', ['192.31.196.0/24', '192.175.48.0/24', '2001:4:112::/48', '2620:4f:8000::/48']],
  ['amt', ['192.52.193.0/24', '2001:3::/32']],
  ['drone-remote-id', ['2001:30::/28']],
] as const

// Names of an address's form rather than of its range: `block` takes them to drop every
// IPv4-mapped address, or every address under a NAT64 prefix (RFC 6052 and RFC 8215).
const FORM_NAMES = ['ipv4-mapped', 'nat64'] as const

/** A range name of the plugin: what reasons show and `block` takes. */
export type RangeName = (typeof SPECIAL_RANGES)[number][0] | (typeof FORM_NAMES)[number]

const NAMED: Array<{ name: RangeName; range: [IP, number] }> = SPECIAL_RANGES.flatMap(([name, cidrs]) =>
  cidrs.map((c) => ({ name, range: ipaddr.parseCIDR(c) })),
)

/** Every range name `block` takes, in kebab case. */
export const RANGE_NAMES: ReadonlySet<RangeName> = new Set<RangeName>([
  ...SPECIAL_RANGES.map(([name]) => name),
  ...FORM_NAMES,
])

/**
 * ipaddr.js's names for its special ranges, taken in `block` for compatibility and read as
 * the name of ours for the same addresses. Its other names (`private`, `teredo`, ...) are ours
 * already.
 */
export const RANGE_ALIASES: ReadonlyMap<string, RangeName> = new Map<string, RangeName>([
  ['linkLocal', 'link-local'],
  ['carrierGradeNat', 'cgn'],
  ['uniqueLocal', 'unique-local'],
  ['deprecatedSiteLocal', 'site-local'],
  ['ipv4Mapped', 'ipv4-mapped'],
  ['rfc6145', 'ipv4-translated'],
  ['rfc6052', 'nat64'],
  ['as112v6', 'as112'],
  ['deprecatedOrchid', 'orchid'],
  ['orchid2', 'orchid'],
  ['droneRemoteIdProtocolEntityTags', 'drone-remote-id'],
  ['segmentRouting', 'reserved'],
])

/** The range name of ours a `block` entry means (exact spelling), or undefined. */
export function rangeNamed(text: string): RangeName | undefined {
  return RANGE_NAMES.has(text as RangeName) ? (text as RangeName) : RANGE_ALIASES.get(text)
}

const GLOBAL_UNICAST_V6 = ipaddr.parseCIDR('2000::/3')
const NAT64_WKP = ipaddr.parseCIDR('64:ff9b::/96')
const NAT64_PREFIXES = [NAT64_WKP, ipaddr.parseCIDR('64:ff9b:1::/48')]

function inRange(ip: IP, range: [IP, number]): boolean {
  return ip.kind() === range[0].kind() && ip.match(range)
}

function rangeName(ip: IP): RangeName | undefined {
  let best: { name: RangeName; range: [IP, number] } | undefined
  for (const named of NAMED) {
    if (inRange(ip, named.range) && (!best || named.range[1] > best.range[1])) best = named
  }
  if (best) return best.name
  if (ip.kind() === 'ipv6' && !inRange(ip, GLOBAL_UNICAST_V6)) return 'reserved'
  // A range ipaddr.js knows and the table above does not (a newer ipaddr.js) is still
  // special: filtered, under a name of ours.
  const ipaddrName = ip.range()
  return ipaddrName === 'unicast' ? undefined : (rangeNamed(ipaddrName) ?? 'reserved')
}

/** The form name of an address as written: IPv4-mapped or under a NAT64 prefix. */
function formName(ip: IP): RangeName | undefined {
  if (ip.kind() !== 'ipv6') return undefined
  if ((ip as ipaddr.IPv6).isIPv4MappedAddress()) return 'ipv4-mapped'
  return NAT64_PREFIXES.some((p) => inRange(ip, p)) ? 'nat64' : undefined
}

/** Strips brackets and a zone id, lower-cases; returns '' when the text is no IP address. */
export function normalizeAddressText(text: string): string {
  let s = String(text).trim().toLowerCase()
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1)
  const zone = s.indexOf('%')
  if (zone >= 0) s = s.slice(0, zone)
  return net.isIP(s) ? s : ''
}

/**
 * `::1.2.3.4` → `::102:304`. ipaddr.js reads any IPv6 address with a dotted tail as
 * IPv4-mapped (`::8.8.8.8` would become `::ffff:8.8.8.8`), so the tail is rewritten first.
 */
function dottedTailToHex(text: string): string {
  const m = /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text)
  if (!m) return text
  const [a, b, c, d] = m.slice(2).map(Number)
  return `${m[1]}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
}

/** Parses `a.b.c.d/n`, `x::/n` or a bare address; null when it is neither. */
export function parseCidr(text: string): Cidr | null {
  const t = String(text).trim().toLowerCase()
  const slash = t.indexOf('/')
  const addr = slash < 0 ? t : t.slice(0, slash)
  if (!net.isIP(addr)) return null
  const bitsText = slash < 0 ? '' : t.slice(slash + 1)
  if (slash >= 0 && !/^\d{1,3}$/.test(bitsText)) return null
  const ip = ipaddr.parse(dottedTailToHex(addr))
  const max = ip.kind() === 'ipv4' ? 32 : 128
  const bits = slash < 0 ? max : Number(bitsText)
  if (bits > max) return null
  // An IPv4-mapped CIDR names IPv4 addresses, and mapped addresses are judged as IPv4.
  if (ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress() && bits >= 96) {
    return { text: t, range: [(ip as ipaddr.IPv6).toIPv4Address(), bits - 96] }
  }
  return { text: t, range: [ip, bits] }
}

function matchCidr(list: Cidr[], ...ips: IP[]): Cidr | undefined {
  return list.find((c) => ips.some((ip) => inRange(ip, c.range)))
}

/** What an address text is, whatever the policy: worked out once per distinct text. */
interface AddressFacts {
  input: string
  /** The address as written, and the IPv4 it is judged by when it carries one. */
  forms: IP[]
  via: string
  name: RangeName | undefined
  form: RangeName | undefined
  family: Family
  address: string
}

/**
 * Address texts seen lately and their facts. Parsing and the range walk are most of the cost
 * of a classification, and a busy queue sends the same few MX addresses again and again; an
 * LRU bound keeps a flood of distinct addresses from growing it.
 */
export const ADDRESS_CACHE_MAX = 4096
/** What the cache keeps for a text that is no IP address (an LRU holds no null). */
const NOT_AN_ADDRESS = Symbol('not an address')
const factsCache = new LRUCache<string, AddressFacts | typeof NOT_AN_ADDRESS>({
  max: ADDRESS_CACHE_MAX,
  memoMethod: (text) => computeFacts(text) ?? NOT_AN_ADDRESS,
})

/** How many address texts are remembered now (at most ADDRESS_CACHE_MAX). */
export const addressCacheSize = (): number => factsCache.size

/** Forgets every remembered address: for a process whose ipaddr.js range tables change (tests). */
export function clearAddressCache(): void {
  factsCache.clear()
}

function addressFacts(text: string): AddressFacts | null {
  const facts = factsCache.memo(text)
  return facts === NOT_AN_ADDRESS ? null : facts
}

function computeFacts(text: string): AddressFacts | null {
  const input = normalizeAddressText(text)
  if (!input) return null

  const parsed = ipaddr.parse(dottedTailToHex(input))
  let judged: IP = parsed
  let target: IP = parsed
  let via = ''
  if (parsed.kind() === 'ipv6') {
    const v6 = parsed as ipaddr.IPv6
    if (v6.isIPv4MappedAddress()) {
      judged = target = v6.toIPv4Address()
      via = ', IPv4-mapped'
    } else if (inRange(v6, NAT64_WKP)) {
      const b = v6.toByteArray()
      judged = new ipaddr.IPv4(b.slice(12))
      via = ', via NAT64'
    }
  }
  const family: Family = target.kind() === 'ipv4' ? 'ipv4' : 'ipv6'
  return {
    input,
    // A mapped address is the IPv4 it carries: only that is matched against the lists.
    forms: target === judged ? [judged] : [parsed, judged],
    via,
    name: rangeName(judged),
    form: formName(parsed),
    family,
    address: family === 'ipv4' ? target.toString() : (target as ipaddr.IPv6).toRFC5952String(),
  }
}

/**
 * Classifies one MX address. IPv4-mapped addresses are judged (and connected to) as the
 * IPv4 they carry; NAT64 well-known-prefix addresses are judged by the embedded IPv4 but
 * kept as IPv6. The unspecified addresses reach the local host and are never permitted.
 * Every call returns a new object; only the policy-free facts of a text are remembered.
 */
export function classifyAddress(text: string, policy: FilterPolicy = DEFAULT_POLICY): Classification {
  const facts = addressFacts(String(text))
  if (!facts) return { routable: false, input: String(text), reason: 'not an IP address' }
  const { input, forms, via, name, family, address } = facts
  if (name === 'unspecified') return { routable: false, input, reason: `unspecified${via}` }

  const blockedRange = [name, facts.form].find((n) => n !== undefined && policy.blockRanges.has(n))
  const blocked = matchCidr(policy.blockCidrs, ...forms)?.text ?? blockedRange
  if (blocked) return { routable: false, input, reason: `blocked by ${blocked}${via}` }

  if (!name) return { routable: true, input, address, family }

  const allowed = matchCidr(policy.allow, ...forms)
  if (allowed) return { routable: true, input, address, family, allowedBy: allowed.text }
  return { routable: false, input, reason: `${name}${via}` }
}
