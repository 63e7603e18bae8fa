// happy_eyeballs.ini → validated settings, by the table in ./options. A bad value is reported
// by name and replaced by its default; unknown sections and keys are reported and ignored.
// Never throws.

import net from 'node:net'

import { type Cidr, type Family, type FilterPolicy, parseCidr, type RangeName, rangeNamed } from './classify'
import { parseHostPattern } from './host-patterns'
import { OPTIONS, type Option, setField } from './options'
import type { RaceSuccess } from './race'
import { validDomain } from './resolve'

function isRegExp(source: string): boolean {
  try {
    new RegExp(source, 'i')
    return true
  } catch {
    return false
  }
}

export interface Settings {
  enabled: boolean
  prefer: Family
  firstFamilyCount: number
  port: number
  maxAddresses: number
  /** Seconds between readings of the host's interfaces; 0: no check, both families used. */
  connectivityCheckS: number
  dns: { servers: string[]; timeoutMs: number; resolutionDelayMs: number }
  filter: { policy: FilterPolicy; allFiltered: 'defer' | 'bounce' }
  bind: { ipv4?: string; ipv6?: string }
  race: {
    enabled: boolean
    success: RaceSuccess
    attemptDelayMs: number
    /** The least learnt attempt delay; attemptDelayMs is the most. */
    minAttemptDelayMs: number
    groupDelayMs: number
    deadlineMs: number
  }
  cache: { ttlS: number; maxEntries: number }
  egress: { ipv6ImpairedAfter: number; windowS: number; recheckS: number }
  family: { ipv4Only: string[]; ipv6Only: string[]; preferIpv4: string[]; preferIpv6: string[] }
  policy: { enabled: boolean; patterns: string[]; ttlS: number }
  /** `listen`: normalized `IP:port` or `[IPv6]:port`; absent: no metrics endpoint. */
  metrics: { listen?: string }
  /** `domains`: A-label, lower case; none: nothing is watched. */
  watch: { domains: string[]; intervalS: number; concurrency: number; timeoutMs: number }
  /** Shared state; host, port 0 and password absent: redis.ini's [server], else its defaults. */
  redis: {
    enabled: boolean
    host?: string
    port: number
    db: number
    password?: string
    prefix: string
    timeoutMs: number
  }
}

export interface ParsedSettings {
  settings: Settings
  /** One line per rejected key or value, naming it and the default used instead. */
  problems: string[]
}

/** The table's rows, as the kinds the parser tells apart. */
const ROWS: readonly Option[] = OPTIONS

/** Section → its keys, from the table. */
const KNOWN = new Map<string, Set<string>>()
for (const o of ROWS) KNOWN.set(o.section, (KNOWN.get(o.section) ?? new Set()).add(o.key))

function applyDefault(settings: Settings, o: Option): void {
  switch (o.type) {
    case 'boolean':
    case 'integer':
    case 'choice':
      return setField(settings, o.field, o.default)
    case 'dns-servers':
    case 'cidr-list':
    case 'pattern-list':
      return setField(settings, o.field, [])
    case 'block-list':
      setField(settings, o.field, [])
      return setField(settings, o.rangesField, new Set())
    case 'address':
    case 'listen':
      return setField(settings, o.field, undefined)
    case 'text':
      return setField(settings, o.field, o.default)
  }
}

export function defaultSettings(): Settings {
  // Every field is filled below: the compiler checks each has a row (SettingsWithoutARow).
  const settings = {} as Settings
  for (const o of ROWS) applyDefault(settings, o)
  return settings
}

type RawValue = unknown
type RawSection = Record<string, RawValue>
export type RawIni = Record<string, RawValue>

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

export interface ListenAddress {
  host: string
  port: number
}

/**
 * `127.0.0.1:9464` or `[::1]:9464`: an IP literal (no name, so nothing is looked up) and a
 * port from 1 to 65535. Undefined for anything else.
 */
export function parseListen(text: string): ListenAddress | undefined {
  const t = text.trim()
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(t) ?? /^([^:[\]]+):(\d{1,5})$/.exec(t)
  if (!m) return undefined
  const host = m[1]
  const port = Number(m[2])
  const family = net.isIP(host)
  // An IPv6 address is written in brackets, an IPv4 one without.
  if (family === 0 || (family === 6) !== t.startsWith('[')) return undefined
  return port >= 1 && port <= 65535 ? { host, port } : undefined
}

/** `[::1]:9464`, `127.0.0.1:9464`: how a listen address is written. */
export const showListen = (l: ListenAddress): string =>
  net.isIP(l.host) === 6 ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`

/** The default as a problem line names it after "using"; the lists of entries have none. */
function shownDefault(o: Option): string {
  switch (o.type) {
    case 'boolean':
    case 'integer':
    case 'choice':
      return show(o.default)
    case 'dns-servers':
      return show('the system resolvers')
    case 'address':
      return show('no bind')
    case 'listen':
      return show('no metrics')
    case 'text':
      return show(o.default ?? 'none')
    case 'cidr-list':
    case 'block-list':
    case 'pattern-list':
      return show([])
  }
}

export function parseSettings(raw: RawIni | undefined | null): ParsedSettings {
  const settings = defaultSettings()
  const problems: string[] = []
  const ini: RawIni = raw && typeof raw === 'object' ? raw : {}

  for (const [section, value] of Object.entries(ini)) {
    const keys = KNOWN.get(section)
    if (!keys) {
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
      if (!keys.has(key)) problems.push(`unknown key [${section}] ${key} ignored`)
    }
  }

  const sec = (name: string): RawSection => {
    const s = Object.hasOwn(ini, name) ? ini[name] : undefined
    return s && typeof s === 'object' && !Array.isArray(s) ? (s as RawSection) : {}
  }

  for (const o of ROWS) {
    const v = sec(o.section)[o.key]
    if (!isBlank(v)) readOption(o, v, settings, problems)
  }

  return { settings, problems }
}

/** Reads a value of `o` (not blank) into `settings`, or reports it and keeps the default. */
function readOption(o: Option, v: RawValue, settings: Settings, problems: string[]): void {
  const bad = (want: string): void => {
    const value = o.type === 'text' && o.secret ? '(hidden)' : show(v)
    problems.push(`[${o.section}] ${o.key}=${value} is not ${want}; using ${shownDefault(o)}`)
  }
  const badEntry = (item: string, isNot: string): void => {
    problems.push(`[${o.section}] ${o.key} entry ${show(item)} is ${isNot}; ignored`)
  }

  switch (o.type) {
    case 'boolean': {
      if (typeof v === 'boolean') {
        setField(settings, o.field, v)
        break
      }
      const s = String(v).trim().toLowerCase()
      if (['true', 'yes', 'on', '1'].includes(s)) setField(settings, o.field, true)
      else if (['false', 'no', 'off', '0'].includes(s)) setField(settings, o.field, false)
      else bad('true or false')
      break
    }
    case 'integer': {
      const s = String(v).trim()
      const n = /^-?\d+$/.test(s) ? Number(s) : NaN
      if (Number.isSafeInteger(n) && n >= o.min && n <= o.max) setField(settings, o.field, n)
      else bad(`a whole number from ${o.min} to ${o.max}`)
      break
    }
    case 'choice': {
      const s = String(v).trim().toLowerCase()
      const choices: readonly string[] = o.choices
      if (choices.includes(s)) setField(settings, o.field, s as typeof o.default)
      else bad(`one of ${o.choices.join('|')}`)
      break
    }
    case 'dns-servers': {
      // One bad server rejects the whole list: no half list of resolvers.
      const list = listOf(v)
      if (list.every(isDnsServer)) setField(settings, o.field, list)
      else bad('a list of IP or IP:port')
      break
    }
    case 'cidr-list': {
      const cidrs: Cidr[] = []
      for (const item of listOf(v)) {
        const cidr = parseCidr(item)
        if (cidr) cidrs.push(cidr)
        else badEntry(item, 'not a CIDR')
      }
      setField(settings, o.field, cidrs)
      break
    }
    case 'block-list': {
      const cidrs: Cidr[] = []
      const ranges = new Set<RangeName>()
      for (const item of listOf(v)) {
        const cidr = parseCidr(item)
        const range = cidr ? undefined : rangeNamed(item)
        if (cidr) cidrs.push(cidr)
        else if (range) ranges.add(range)
        else badEntry(item, 'neither a CIDR nor a range name')
      }
      setField(settings, o.field, cidrs)
      setField(settings, o.rangesField, ranges)
      break
    }
    case 'pattern-list': {
      const patterns: string[] = []
      // A regular expression may hold commas and spaces: one per `key[]=` line.
      const items =
        o.syntax === 'regex' ? (Array.isArray(v) ? v : [v]).map((i) => String(i ?? '').trim()) : listOf(v)
      for (const item of items.filter(Boolean)) {
        if (o.syntax === 'host') {
          const pattern = parseHostPattern(item)
          if (pattern) patterns.push(pattern)
          else badEntry(item, 'neither a domain nor *.domain')
        } else if (o.syntax === 'domain') {
          const domain = validDomain(item)
          if (domain && !patterns.includes(domain)) patterns.push(domain)
          else if (!domain) badEntry(item, 'not a domain')
        } else if (isRegExp(item)) patterns.push(item)
        else badEntry(item, 'not a regular expression')
      }
      setField(settings, o.field, patterns)
      break
    }
    case 'address': {
      const s = String(v).trim()
      if (net.isIP(s) === (o.family === 'ipv4' ? 4 : 6)) setField(settings, o.field, s)
      else bad(`an ${o.family === 'ipv4' ? 'IPv4' : 'IPv6'} address`)
      break
    }
    case 'listen': {
      const listen = parseListen(String(v))
      if (listen) setField(settings, o.field, showListen(listen))
      else bad('IP:port or [IPv6]:port with a port from 1 to 65535')
      break
    }
    case 'text': {
      // A section or a list is no text: Haraka's reader gives strings, numbers and booleans.
      if (typeof v === 'string' || typeof v === 'number') setField(settings, o.field, String(v).trim())
      else bad('text')
      break
    }
  }
}
