// `status` from the shared state in Redis ([redis] in happy_eyeballs.ini): what every worker
// and host of the fleet knows now. Families' health over the MX hosts and addresses with a
// recent outcome, MX hosts whose IPv6 fails and since when, MX hosts reached over IPv4 only
// because they refused this sender over IPv6, and until when. Read with SCAN, bounded.

import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'

import type { Family } from '../classify'
import type { Settings } from '../config'
import { describeError } from '../errors'
import {
  createRedisClient,
  describeEndpoint,
  type RedisClient,
  redisClientOptions,
  type RedisClientOptions,
} from '../redis-store'
import { decodeOutcome, decodeRefusal } from '../shared-health'
import { decodeEvidence } from '../shared-learned'
import { EndpointError } from './status'

export interface FamilyHealth {
  /** MX hosts with a recent outcome over this family, and of those, failing or slow now. */
  hosts: number
  failingHosts: number
  slowHosts: number
  /** Addresses with a recent outcome, and of those, failing now. */
  addresses: number
  failingAddresses: number
}

export interface ImpairedHost {
  exchange: string
  /** The address of the last failure, and its error. */
  address: string
  error: string
  /** ISO time of the first failure in a row, and of the last one. */
  since: string
  last: string
}

export interface PolicyHost {
  exchange: string
  refusal: string
  /** ISO time until which the host is reached over IPv4 only. */
  until: string
}

/** One Haraka host's IPv6 egress, from the evidence its workers share. */
export interface HostEgress {
  host: string
  /** As the workers judge it: at least [egress] ipv6_impaired_after MX hosts of evidence. */
  ipv6Impaired: boolean
  /** MX hosts where IPv6 went unanswered while IPv4 worked, within the window. */
  destinations: string[]
  /** ISO time of the latest evidence, and of the last IPv6 success after evidence. */
  last?: string
  workedAt?: string
}

export interface FleetReport {
  /** `redis://127.0.0.1:6379/2` and the key prefix. */
  redis: string
  prefix: string
  families: Record<Family, FamilyHealth>
  impairedIpv6: ImpairedHost[]
  ipv4ByPolicy: PolicyHost[]
  /** Each host whose workers shared egress evidence. */
  egress: HostEgress[]
  /** Keys read; `truncated` when there were more than the bound. */
  keys: number
  truncated: boolean
}

/** Keys read at most: the report of a very large fleet says it is cut. */
export const MAX_FLEET_KEYS = 100_000
const BATCH = 500

const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z')
const emptyHealth = (): FamilyHealth => ({
  hosts: 0,
  failingHosts: 0,
  slowHosts: 0,
  addresses: 0,
  failingAddresses: 0,
})

/** How the workers judge egress ([egress] ipv6_impaired_after and window_s), and now. */
export interface FleetEgressRule {
  ipv6ImpairedAfter?: number
  windowMs?: number
  now?: number
}

/** The report from the shared records: `values` maps a key (without the prefix) to its value. */
export function summarizeFleet(
  redis: string,
  prefix: string,
  values: ReadonlyMap<string, string>,
  truncated: boolean,
  egress: FleetEgressRule = {},
): FleetReport {
  const { ipv6ImpairedAfter = 3, windowMs = Infinity, now = Date.now() } = egress
  const report: FleetReport = {
    redis,
    prefix,
    families: { ipv4: emptyHealth(), ipv6: emptyHealth() },
    impairedIpv6: [],
    ipv4ByPolicy: [],
    egress: [],
    keys: values.size,
    truncated,
  }
  for (const [key, text] of values) {
    const tag = key.slice(0, 2)
    const id = key.slice(2)
    try {
      if (tag === 'f:') {
        const v = decodeOutcome(text)
        if (!v) continue
        const h = report.families[v.family]
        h.hosts++
        if (v.outcome.slow) h.slowHosts++
        else if (!v.outcome.ok) {
          h.failingHosts++
          if (v.family === 'ipv6')
            report.impairedIpv6.push({
              exchange: id.slice(0, id.lastIndexOf('|')),
              address: v.address,
              error: v.outcome.error ?? 'failed',
              since: iso(v.since ?? v.outcome.at),
              last: iso(v.outcome.at),
            })
        }
      } else if (tag === 'a:') {
        const v = decodeOutcome(text, id)
        if (!v) continue
        report.families[v.family].addresses++
        if (!v.outcome.ok && !v.outcome.slow) report.families[v.family].failingAddresses++
      } else if (tag === 'p:') {
        const v = decodeRefusal(text)
        if (v) report.ipv4ByPolicy.push({ exchange: id, refusal: v.refusal, until: iso(v.until) })
      } else if (tag === 'e:') {
        const v = decodeEvidence(text)
        if (!v) continue
        const recent = (t: number | undefined): boolean =>
          t !== undefined && t > now - windowMs && t > (v.clearedAt ?? -Infinity)
        const complete = v.hosts.filter(([, e]) => recent(e.v6UnansweredAt) && recent(e.v4ConnectedAt))
        const latest = Math.max(
          ...v.hosts.flatMap(([, e]) => [e.v6UnansweredAt ?? 0, e.v4ConnectedAt ?? 0]),
          0,
        )
        report.egress.push({
          host: id,
          ipv6Impaired: ipv6ImpairedAfter > 0 && complete.length >= ipv6ImpairedAfter,
          destinations: complete.map(([x]) => x).sort(),
          ...(latest > 0 ? { last: iso(latest) } : {}),
          ...(v.clearedAt !== undefined ? { workedAt: iso(v.clearedAt) } : {}),
        })
      }
    } catch {
      // a record of another version, or garbage: not counted
    }
  }
  report.impairedIpv6.sort((a, b) => a.since.localeCompare(b.since) || a.exchange.localeCompare(b.exchange))
  report.egress.sort((a, b) => a.host.localeCompare(b.host))
  report.ipv4ByPolicy.sort((a, b) => a.until.localeCompare(b.until) || a.exchange.localeCompare(b.exchange))
  return report
}

/** redis.ini next to happy_eyeballs.ini in the --config directory (or its config/), if any. */
export function readRedisIni(configDir: string | undefined): unknown {
  if (configDir === undefined) return {}
  const dir = path.resolve(configDir)
  const file = [path.join(dir, 'redis.ini'), path.join(dir, 'config', 'redis.ini')].find((f) =>
    fs.existsSync(f),
  )
  if (!file) return {}
  const ini = createRequire(__filename)('haraka-config/lib/readers/ini') as {
    parseIni(name: string, options: object, data: string): unknown
  }
  return ini.parseIni(file, {}, fs.readFileSync(file, 'utf8'))
}

/** Every shared record under the prefix, read with SCAN and MGET (at most MAX_FLEET_KEYS). */
async function readShared(
  client: RedisClient,
  prefix: string,
): Promise<{ values: Map<string, string>; truncated: boolean }> {
  const match = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`
  const keys: string[] = []
  let truncated = false
  for await (const batch of client.scanIterator({ MATCH: match, COUNT: 1000 })) {
    keys.push(...batch)
    if (keys.length >= MAX_FLEET_KEYS) {
      truncated = true
      break
    }
  }
  const values = new Map<string, string>()
  for (let i = 0; i < keys.length && i < MAX_FLEET_KEYS; i += BATCH) {
    const some = keys.slice(i, i + BATCH)
    const got = await client.mGet(some)
    some.forEach((k, j) => {
      const v = got[j]
      if (typeof v === 'string') values.set(k.slice(prefix.length), v)
    })
  }
  return { values, truncated }
}

/** Connects once (no retries), reads the fleet's state, closes; an EndpointError says why not. */
export async function fetchFleet(
  settings: Settings['redis'],
  redisIni: unknown,
  timeoutMs: number,
  egress?: FleetEgressRule,
): Promise<FleetReport> {
  const merged = redisClientOptions(settings, redisIni, 1000)
  const options: RedisClientOptions = {
    ...merged,
    socket: { ...merged.socket, connectTimeout: timeoutMs, reconnectStrategy: false },
  }
  const endpoint = describeEndpoint(options)
  const client = createRedisClient(options)
  // Errors come back from connect and the commands; without a listener node-redis would throw.
  client.on('error', () => {})
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs)
  })
  try {
    const read = (async () => {
      await client.connect()
      return readShared(client, settings.prefix)
    })()
    const { values, truncated } = await Promise.race([read, deadline])
    return summarizeFleet(endpoint, settings.prefix, values, truncated, egress)
  } catch (err) {
    throw new EndpointError(`no answer from ${endpoint}: ${describeError(err)}`)
  } finally {
    clearTimeout(timer)
    try {
      client.destroy()
    } catch {
      // never connected: nothing to close
    }
  }
}

/** The report as text. */
export function fleetText(r: FleetReport): string {
  const lines: string[] = [`shared state in ${r.redis} (keys ${r.prefix}*)`]
  lines.push(`${'family health'.padEnd(30)} ${'IPv4'.padStart(8)} ${'IPv6'.padStart(8)}`)
  const row = (label: string, pick: (h: FamilyHealth) => number): void => {
    lines.push(
      `${label.padEnd(30)} ${String(pick(r.families.ipv4)).padStart(8)} ${String(pick(r.families.ipv6)).padStart(8)}`,
    )
  }
  row('MX hosts seen', (h) => h.hosts)
  row('MX hosts failing', (h) => h.failingHosts)
  row('MX hosts slow', (h) => h.slowHosts)
  row('addresses seen', (h) => h.addresses)
  row('addresses failing', (h) => h.failingAddresses)
  lines.push(`MX hosts with impaired IPv6: ${r.impairedIpv6.length}`)
  for (const h of r.impairedIpv6)
    lines.push(`  ${h.exchange} since ${h.since} (last ${h.last}: ${h.address} ${h.error})`)
  lines.push(`MX hosts on IPv4 by policy: ${r.ipv4ByPolicy.length}`)
  for (const p of r.ipv4ByPolicy) lines.push(`  ${p.exchange} until ${p.until}: ${p.refusal}`)
  for (const e of r.egress) {
    const state = e.ipv6Impaired ? 'impaired' : 'not impaired'
    const at = e.destinations.length ? ` (unanswered at ${e.destinations.join(', ')}; last ${e.last})` : ''
    lines.push(`IPv6 egress of ${e.host}: ${state}${at}${e.workedAt ? `; IPv6 worked ${e.workedAt}` : ''}`)
  }
  if (r.truncated) lines.push(`(only the first ${r.keys} keys were read)`)
  return lines.join('\n') + '\n'
}
