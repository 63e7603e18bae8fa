// happy_eyeballs.ini → validated settings. A bad value is reported by name and replaced by
// its default; unknown sections and keys are reported and ignored. Never throws.

import net from 'node:net'

import { type Cidr, type Family, type FilterPolicy, parseCidr, type RangeName, rangeNamed } from './classify'

export interface Settings {
  enabled: boolean
  prefer: Family
  firstFamilyCount: number
  port: number
  maxAddresses: number
  dns: { servers: string[]; timeoutMs: number }
  filter: { policy: FilterPolicy; allFiltered: 'defer' | 'bounce' }
  bind: { ipv4?: string; ipv6?: string }
  race: { enabled: boolean; attemptDelayMs: number; groupDelayMs: number; deadlineMs: number }
  cache: { ttlS: number; maxEntries: number }
}

export interface ParsedSettings {
  settings: Settings
  /** One line per rejected key or value, naming it and the default used instead. */
  problems: string[]
}

export function defaultSettings(): Settings {
  return {
    enabled: true,
    prefer: 'ipv6',
    firstFamilyCount: 1,
    port: 25,
    maxAddresses: 16,
    dns: { servers: [], timeoutMs: 5000 },
    filter: { policy: { allow: [], blockCidrs: [], blockRanges: new Set() }, allFiltered: 'defer' },
    bind: {},
    race: { enabled: true, attemptDelayMs: 250, groupDelayMs: 2000, deadlineMs: 15000 },
    cache: { ttlS: 600, maxEntries: 10000 },
  }
}

type RawValue = unknown
type RawSection = Record<string, RawValue>
export type RawIni = Record<string, RawValue>

const KNOWN: Record<string, string[]> = {
  main: ['enabled', 'prefer', 'first_family_count', 'port', 'max_addresses'],
  dns: ['servers', 'timeout_ms'],
  filter: ['allow', 'block', 'all_filtered'],
  bind: ['ipv4', 'ipv6'],
  race: ['enabled', 'attempt_delay_ms', 'group_delay_ms', 'deadline_ms'],
  cache: ['ttl_s', 'max_entries'],
}

const show = (v: RawValue): string =>
  typeof v === 'number' && !Number.isFinite(v) ? String(v) : (JSON.stringify(v) ?? String(v))

function isBlank(v: RawValue): boolean {
  return v === undefined || v === null || (typeof v === 'string' && v.trim() === '')
}

/** Items of an `x[]=` array or a comma separated string. */
function listOf(v: RawValue): string[] {
  const items = Array.isArray(v) ? v : [v]
  return items
    .flatMap((i) => String(i ?? '').split(/[,\s]+/))
    .map((s) => s.trim())
    .filter(Boolean)
}

/** `host`, `host:port`, `[v6]` or `[v6]:port` with an IP host: what a DNS Resolver takes. */
export function isDnsServer(text: string): boolean {
  if (net.isIP(text)) return true
  const bracketed = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text)
  const plain = /^([^:]+):(\d{1,5})$/.exec(text)
  const m = bracketed ?? plain
  if (!m) return false
  const port = Number(m[2])
  return net.isIP(m[1]) !== 0 && port >= 1 && port <= 65535
}

export function parseSettings(raw: RawIni | undefined | null): ParsedSettings {
  const settings = defaultSettings()
  const problems: string[] = []
  const ini: RawIni = raw && typeof raw === 'object' ? raw : {}

  for (const [section, value] of Object.entries(ini)) {
    if (!Object.hasOwn(KNOWN, section)) {
      // Haraka's ini reader puts keys above the first [section] into `main`, so a stray
      // top-level scalar is a key without a section.
      problems.push(`unknown section [${section}] ignored`)
      continue
    }
    if (value === null || value === undefined) continue
    if (typeof value !== 'object' || Array.isArray(value)) {
      problems.push(`[${section}] is not a section (${show(value)}); its defaults stay`)
      continue
    }
    for (const key of Object.keys(value)) {
      if (!KNOWN[section].includes(key)) problems.push(`unknown key [${section}] ${key} ignored`)
    }
  }

  const sec = (name: string): RawSection => {
    const s = Object.hasOwn(ini, name) ? ini[name] : undefined
    return s && typeof s === 'object' && !Array.isArray(s) ? (s as RawSection) : {}
  }

  const bad = (section: string, key: string, value: RawValue, want: string, def: RawValue): void => {
    problems.push(`[${section}] ${key}=${show(value)} is not ${want}; using ${show(def)}`)
  }

  const bool = (section: string, key: string, def: boolean): boolean => {
    const v = sec(section)[key]
    if (isBlank(v)) return def
    if (typeof v === 'boolean') return v
    const s = String(v).trim().toLowerCase()
    if (['true', 'yes', 'on', '1'].includes(s)) return true
    if (['false', 'no', 'off', '0'].includes(s)) return false
    bad(section, key, v, 'true or false', def)
    return def
  }

  const int = (section: string, key: string, def: number, min: number, max: number): number => {
    const v = sec(section)[key]
    if (isBlank(v)) return def
    const s = String(v).trim()
    const n = /^-?\d+$/.test(s) ? Number(s) : NaN
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      bad(section, key, v, `a whole number from ${min} to ${max}`, def)
      return def
    }
    return n
  }

  const choice = <T extends string>(section: string, key: string, def: T, allowed: readonly T[]): T => {
    const v = sec(section)[key]
    if (isBlank(v)) return def
    const s = String(v).trim().toLowerCase() as T
    if (allowed.includes(s)) return s
    bad(section, key, v, `one of ${allowed.join('|')}`, def)
    return def
  }

  settings.enabled = bool('main', 'enabled', settings.enabled)
  settings.prefer = choice('main', 'prefer', settings.prefer, ['ipv6', 'ipv4'] as const)
  settings.firstFamilyCount = int('main', 'first_family_count', settings.firstFamilyCount, 1, 16)
  settings.port = int('main', 'port', settings.port, 1, 65535)
  settings.maxAddresses = int('main', 'max_addresses', settings.maxAddresses, 2, 256)

  const servers = sec('dns').servers
  if (!isBlank(servers)) {
    const list = listOf(servers)
    const wrong = list.filter((s) => !isDnsServer(s))
    if (wrong.length) bad('dns', 'servers', servers, 'a list of IP or IP:port', 'the system resolvers')
    else settings.dns.servers = list
  }
  settings.dns.timeoutMs = int('dns', 'timeout_ms', settings.dns.timeoutMs, 100, 30000)

  const allow: Cidr[] = []
  for (const item of listOf(sec('filter').allow)) {
    const cidr = parseCidr(item)
    if (cidr) allow.push(cidr)
    else problems.push(`[filter] allow entry ${show(item)} is not a CIDR; ignored`)
  }
  const blockCidrs: Cidr[] = []
  const blockRanges = new Set<RangeName>()
  for (const item of listOf(sec('filter').block)) {
    const cidr = parseCidr(item)
    const range = cidr ? undefined : rangeNamed(item)
    if (cidr) blockCidrs.push(cidr)
    else if (range) blockRanges.add(range)
    else problems.push(`[filter] block entry ${show(item)} is neither a CIDR nor a range name; ignored`)
  }
  settings.filter.policy = { allow, blockCidrs, blockRanges }
  settings.filter.allFiltered = choice('filter', 'all_filtered', settings.filter.allFiltered, [
    'defer',
    'bounce',
  ] as const)

  for (const family of ['ipv4', 'ipv6'] as const) {
    const v = sec('bind')[family]
    if (isBlank(v)) continue
    const s = String(v).trim()
    if (net.isIP(s) === (family === 'ipv4' ? 4 : 6)) settings.bind[family] = s
    else bad('bind', family, v, `an ${family === 'ipv4' ? 'IPv4' : 'IPv6'} address`, 'no bind')
  }

  settings.race.enabled = bool('race', 'enabled', settings.race.enabled)
  settings.race.attemptDelayMs = int('race', 'attempt_delay_ms', settings.race.attemptDelayMs, 10, 2000)
  settings.race.groupDelayMs = int('race', 'group_delay_ms', settings.race.groupDelayMs, 0, 30000)
  settings.race.deadlineMs = int('race', 'deadline_ms', settings.race.deadlineMs, 100, 60000)

  settings.cache.ttlS = int('cache', 'ttl_s', settings.cache.ttlS, 0, 86400)
  settings.cache.maxEntries = int('cache', 'max_entries', settings.cache.maxEntries, 10, 1000000)

  return { settings, problems }
}
