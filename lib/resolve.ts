// MX and address lookups for one domain with the plugin's own resolver. A temporary DNS
// problem must never read as "no such domain": only NXDOMAIN and null MX are final.

import net from 'node:net'
import { promises as dnsPromises } from 'node:dns'
import { domainToASCII } from 'node:url'

import type { Family } from './classify'

export interface DnsClient {
  resolveMx(name: string): Promise<Array<{ exchange: string; priority: number }>>
  resolve4(name: string): Promise<string[]>
  resolve6(name: string): Promise<string[]>
}

export interface MxHost {
  exchange: string
  preference: number
  /** AAAA answers then A answers, as the DNS gave them (not yet classified). */
  addresses: string[]
  /** A failed lookup of one family, e.g. `AAAA ESERVFAIL`; NODATA is no error. */
  errors: string[]
}

export type Resolution =
  | {
      kind: 'hosts'
      domain: string
      implicit: boolean
      hosts: MxHost[]
      /** Only these families were looked up (ResolveOptions.families); absent: both. */
      families?: readonly Family[]
    }
  | { kind: 'null-mx'; domain: string }
  | { kind: 'no-domain'; domain: string; detail: string }
  | {
      kind: 'temporary'
      domain: string
      detail: string
      /** The resolver's error code when one code explains the failure (ETIMEOUT, ESERVFAIL, …). */
      code?: string
    }

/** The address query types, one per family. */
export type AddressType = 'AAAA' | 'A'

const TYPE_OF: Record<Family, AddressType> = { ipv6: 'AAAA', ipv4: 'A' }

/** What one address query gave: its addresses, or the failure. NODATA is no error. */
export interface AddressAnswer {
  addresses: string[]
  /** A failed lookup, e.g. `AAAA ESERVFAIL`. */
  error?: string
  code?: string
  /** NXDOMAIN for the host name. */
  noName?: boolean
}

/** One address query of one MX host; `answer` is absent while the query is pending. */
export interface AddressLookup {
  exchange: string
  preference: number
  type: AddressType
  answer?: AddressAnswer
}

/** The MX step's hosts and their address lookups, as far as they have answered. */
export interface ResolutionProgress {
  domain: string
  /** No MX records: the domain itself is the one host. */
  implicit: boolean
  /** Lowest preference first; per host AAAA before A. */
  lookups: readonly AddressLookup[]
}

export interface ResolveOptions {
  /** MX hosts looked at, lowest preference first: bounds the fan-out of a hostile zone. */
  maxHosts?: number
  /**
   * The families to look up (this host's connectivity): without `ipv6` no AAAA query, without
   * `ipv4` no A query; an IP literal MX is kept. Absent or empty: both.
   */
  families?: readonly Family[]
  /**
   * Called once the MX step gave hosts (every address lookup pending), then after each
   * address answer: what RFC 8305 §3 starts connecting from before the rest has answered.
   */
  onProgress?(progress: ResolutionProgress): void
}

/** The hosts as far as their lookups have answered: AAAA answers then A answers each. */
export function hostsOf(lookups: readonly AddressLookup[]): MxHost[] {
  const hosts = new Map<string, MxHost>()
  for (const l of lookups) {
    let host = hosts.get(l.exchange)
    if (!host)
      hosts.set(
        l.exchange,
        (host = { exchange: l.exchange, preference: l.preference, addresses: [], errors: [] }),
      )
    if (!l.answer) continue
    host.addresses.push(...l.answer.addresses)
    if (l.answer.error) host.errors.push(l.answer.error)
  }
  return [...hosts.values()]
}

/** `mx2.example AAAA` for each lookup still pending. */
export const pendingLookups = (lookups: readonly AddressLookup[]): string[] =>
  lookups.filter((l) => !l.answer).map((l) => `${l.exchange} ${l.type}`)

/** A node:dns Resolver on the given servers (system ones when empty), one try per query. */
export function makeDnsClient(servers: string[], timeoutMs: number): DnsClient {
  const resolver = new dnsPromises.Resolver({ timeout: timeoutMs, tries: 1 })
  if (servers.length) resolver.setServers(servers)
  return resolver
}

/** IDN to A-label, trailing dot and case folded; '' when it is no usable domain. */
export function toAsciiDomain(domain: string): string {
  const d = String(domain ?? '')
    .trim()
    .replace(/\.$/, '')
  if (!d || d.length > 253) return ''
  return domainToASCII(d).toLowerCase()
}

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/

/**
 * The domain as the plugin looks it up (A-label, lower case), or undefined when it is no
 * host name: an IP address, an empty label, a label over 63 octets or with other characters
 * than letters, digits and inner hyphens.
 */
export function validDomain(input: string): string | undefined {
  const ascii = toAsciiDomain(input)
  if (!ascii || net.isIP(ascii)) return undefined
  return ascii.split('.').every((l) => LABEL.test(l)) ? ascii : undefined
}

/** The resolver's error code (ENODATA, ESERVFAIL, ...). Anything else is a bug: rethrown. */
function errorCode(err: unknown): string {
  const code = err && typeof err === 'object' ? (err as { code?: unknown }).code : undefined
  if (typeof code === 'string' && code) return code
  throw err
}

const isNoData = (code: string): boolean => code === 'ENODATA'
const isNoName = (code: string): boolean => code === 'ENOTFOUND'
// A name the resolver refuses to send (a label over 63 octets, ...) can never resolve.
const isBadName = (code: string): boolean => code === 'EBADNAME'

async function lookupFamily(
  dns: DnsClient,
  name: string,
  type: 'AAAA' | 'A',
): Promise<{ addresses: string[]; error?: string; code?: string; noName?: boolean }> {
  try {
    const answers = type === 'AAAA' ? await dns.resolve6(name) : await dns.resolve4(name)
    return { addresses: answers }
  } catch (err) {
    const code = errorCode(err)
    if (isNoData(code)) return { addresses: [] }
    if (isNoName(code)) return { addresses: [], noName: true }
    return { addresses: [], error: `${type} ${code}`, code }
  }
}

const BOTH: readonly Family[] = ['ipv6', 'ipv4']

/** A host's lookups: one per family queried, or the IP literal itself, answered already. */
function lookupsOf(exchange: string, preference: number, families: readonly Family[]): AddressLookup[] {
  const literal = net.isIP(exchange)
  if (literal)
    return [{ exchange, preference, type: literal === 6 ? 'AAAA' : 'A', answer: { addresses: [exchange] } }]
  return (['ipv6', 'ipv4'] as const)
    .filter((f) => families.includes(f))
    .map((f) => ({ exchange, preference, type: TYPE_OF[f] }))
}

/**
 * Every pending lookup in parallel (one family failing never hides the other's answer),
 * telling `onProgress` of each answer as it comes.
 */
async function runLookups(dns: DnsClient, progress: ResolutionProgress, opts: ResolveOptions): Promise<void> {
  opts.onProgress?.(progress)
  await Promise.all(
    progress.lookups
      .filter((l) => !l.answer)
      .map(async (l) => {
        l.answer = await lookupFamily(dns, l.exchange, l.type)
        opts.onProgress?.(progress)
      }),
  )
}

export async function resolveDestination(
  rawDomain: string,
  dns: DnsClient,
  opts: ResolveOptions = {},
): Promise<Resolution> {
  const maxHosts = opts.maxHosts ?? 20
  const domain = toAsciiDomain(rawDomain)
  if (!domain) return { kind: 'no-domain', domain: String(rawDomain), detail: 'not a valid domain name' }

  let records: Array<{ exchange: string; priority: number }> = []
  try {
    records = await dns.resolveMx(domain)
  } catch (err) {
    const code = errorCode(err)
    if (isNoName(code)) return { kind: 'no-domain', domain, detail: `NXDOMAIN for ${domain}` }
    if (isBadName(code)) return { kind: 'no-domain', domain, detail: `${domain} is not a valid domain name` }
    if (!isNoData(code))
      return { kind: 'temporary', domain, detail: `MX lookup for ${domain}: ${code}`, code }
  }

  const real = records.filter((r) => r.exchange !== '' && r.exchange !== '.')
  if (records.length && !real.length) return { kind: 'null-mx', domain }

  const families = opts.families?.length ? opts.families : BOTH
  const restricted = families.length < BOTH.length ? { families } : {}
  if (!real.length) {
    // RFC 5321 §5.1: no MX records, the domain itself is the implicit MX.
    let progress: ResolutionProgress = { domain, implicit: true, lookups: lookupsOf(domain, 0, families) }
    await runLookups(dns, progress, opts)
    let asked = restricted
    // Whether the domain exists at all must not hang on the family left out: ask it too.
    if (restricted.families && !hostsOf(progress.lookups)[0]?.addresses.length) {
      const left = BOTH.filter((f) => !families.includes(f))
      progress = { ...progress, lookups: [...progress.lookups, ...lookupsOf(domain, 0, left)] }
      await runLookups(dns, progress, opts)
      asked = {}
    }
    const [host = { exchange: domain, preference: 0, addresses: [], errors: [] }] = hostsOf(progress.lookups)
    if (!host.addresses.length && host.errors.length) {
      const detail = `${domain}: ${host.errors.join(', ')}`
      // AAAA and A failing alike (both ETIMEOUT) is one cause; two different codes are not.
      const codes = progress.lookups.map((l) => l.answer?.code).filter((c): c is string => Boolean(c))
      const [code, other] = new Set(codes)
      return { kind: 'temporary', domain, detail, ...(other === undefined ? { code } : {}) }
    }
    if (!host.addresses.length) {
      return { kind: 'no-domain', domain, detail: `${domain} has no MX, AAAA or A records` }
    }
    return { kind: 'hosts', domain, implicit: true, hosts: [host], ...asked }
  }

  // One entry per host name, at its lowest preference.
  const byName = new Map<string, number>()
  for (const r of real) {
    const name = r.exchange.toLowerCase().replace(/\.$/, '')
    const pref = Number.isFinite(r.priority) ? r.priority : 65535
    if (!byName.has(name) || pref < (byName.get(name) as number)) byName.set(name, pref)
  }
  const chosen = [...byName.entries()].sort((a, b) => a[1] - b[1]).slice(0, maxHosts)
  const lookups = chosen.flatMap(([name, pref]) => lookupsOf(name, pref, families))
  const progress: ResolutionProgress = { domain, implicit: false, lookups }
  await runLookups(dns, progress, opts)
  return { kind: 'hosts', domain, implicit: false, hosts: hostsOf(lookups), ...restricted }
}
