// The `haraka-happy-eyeballs` command: shows what the plugin would do for one destination
// domain, from the same happy_eyeballs.ini Haraka reads, without Haraka. Every decision comes
// from the plugin's own modules so the command cannot drift from the plugin.

import { getServers as systemDnsServers } from 'node:dns'

import { parseSettings, type Settings } from '../config'
import { type DeliveryRecord, showStatus } from '../delivery'
import { seededRandom } from '../order'
import { makeDnsClient } from '../resolve'
import { parseOptions, PROG, type StatusOptions, USAGE, UsageError } from './args'
import { CONFIG_FILE, loadRawIni } from './config'
import { dnsUnreachable, memoDns, planDomain } from './plan'
import { probePlan, type ProbeReport } from './probe'
import { type CliOutput, Progress } from './progress'
import { planJson, planText, probeJson, probeText, statusJson, statusText } from './render'
import { fetchFleet, type FleetEgressRule, fleetText, readRedisIni } from './fleet'
import { EndpointError, fetchStatus } from './status'

export type { CliOutput } from './progress'

export interface CliIo {
  stdout: CliOutput
  stderr: CliOutput
  /** stderr is a terminal: progress may be an animated spinner. */
  isTTY?: boolean
}

async function run(argv: string[], io: CliIo): Promise<number> {
  const opts = parseOptions(argv)
  if (!opts) {
    io.stdout.write(USAGE)
    return 0
  }
  if (opts.command === 'status') return status(opts, io)
  const warn = (msg: string): void => {
    io.stderr.write(`${PROG}: warning: ${msg}\n`)
  }

  const raw = loadRawIni(opts.configDir, warn)
  const { settings, problems } = parseSettings(raw)
  for (const p of problems) warn(`${CONFIG_FILE}: ${p}`)
  if (!settings.enabled) warn(`${CONFIG_FILE} has [main] enabled=false: Haraka would route mail itself`)
  if (opts.dns) settings.dns.servers = opts.dns
  if (opts.port !== undefined) settings.port = opts.port

  const progress = new Progress(io.stderr, io.isTTY === true)
  const dns = memoDns(makeDnsClient(settings.dns.servers, settings.dns.timeoutMs), (t) => progress.update(t))
  const seed = Math.floor(Math.random() * 2 ** 32)
  let record: DeliveryRecord
  try {
    record = await planDomain(opts.domain, settings, dns, seededRandom(seed))
  } finally {
    progress.end()
  }
  const { decision } = record

  const unreachable = dnsUnreachable(record)
  if (unreachable && decision.action !== 'deliver') {
    const servers = settings.dns.servers.length
      ? settings.dns.servers.join(', ')
      : `${systemDnsServers().join(', ') || 'none'} (system)`
    const consequence = `the plugin would ${decision.action} ${showStatus(decision.status)}`
    io.stderr.write(
      `${PROG}: DNS server ${servers} unreachable (${unreachable}) resolving ${record.domain}; ${consequence}\n`,
    )
  }

  let probe: ProbeReport | undefined
  if (opts.command === 'probe' && decision.action === 'deliver' && record.plan) {
    probe = await probePlan(record.plan, settings, opts.timeoutMs ?? settings.race.deadlineMs, progress)
  }

  if (opts.json) {
    const out: object = {
      ...planJson(record),
      ...(opts.command === 'probe' ? { probe: probe ? probeJson(probe) : null } : {}),
    }
    io.stdout.write(JSON.stringify(out, null, 2) + '\n')
  } else if (!unreachable) {
    io.stdout.write(planText(record, settings.port))
    if (probe) io.stdout.write(probeText(probe))
    else if (opts.command === 'probe') io.stdout.write('probe: nothing to connect to\n')
  }

  if (opts.command === 'probe') return probe?.addresses.some((a) => a.connected) ? 0 : 1
  return decision.action === 'deliver' ? 0 : 1
}

/**
 * The status command: the metrics endpoint (--metrics), the fleet's shared state in Redis
 * (--config with [redis] enabled=true), or both. 0 when each answered, else 1.
 */
async function status(opts: StatusOptions, io: CliIo): Promise<number> {
  const timeoutMs = opts.timeoutMs ?? 5000
  let redis: Settings['redis'] | undefined
  let egress: FleetEgressRule | undefined
  if (opts.configDir !== undefined) {
    const warn = (msg: string): void => {
      io.stderr.write(`${PROG}: warning: ${msg}\n`)
    }
    const { settings, problems } = parseSettings(loadRawIni(opts.configDir, warn))
    for (const p of problems) warn(`${CONFIG_FILE}: ${p}`)
    egress = {
      ipv6ImpairedAfter: settings.egress.ipv6ImpairedAfter,
      windowMs: settings.egress.windowS * 1000,
    }
    if (settings.redis.enabled) redis = settings.redis
    else if (!opts.metricsUrl)
      throw new UsageError(
        `${CONFIG_FILE} in ${opts.configDir} has no [redis] enabled=true: no shared state to read`,
      )
  }
  try {
    const [report, fleet] = await Promise.all([
      opts.metricsUrl ? fetchStatus(opts.metricsUrl, timeoutMs) : undefined,
      redis ? fetchFleet(redis, readRedisIni(opts.configDir), timeoutMs, egress) : undefined,
    ])
    if (opts.json) {
      const out = { ...(report ? statusJson(report) : {}), ...(fleet ? { fleet } : {}) }
      io.stdout.write(JSON.stringify(out, null, 2) + '\n')
    } else {
      io.stdout.write(
        [report ? statusText(report) : '', fleet ? fleetText(fleet) : ''].filter(Boolean).join('\n'),
      )
    }
    return 0
  } catch (err) {
    if (!(err instanceof EndpointError)) throw err
    io.stderr.write(`${PROG}: ${err.message}\n`)
    return 1
  }
}

/** Runs the command; never throws. Returns the exit status. */
export async function main(argv: string[], io: CliIo): Promise<number> {
  try {
    return await run(argv, io)
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`${PROG}: ${err.message} (see --help)\n`)
      return 2
    }
    io.stderr.write(`${PROG}: internal error: ${err instanceof Error ? err.message : String(err)}\n`)
    return 1
  }
}
