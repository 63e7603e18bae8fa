// The `haraka-happy-eyeballs` command: shows what the plugin would do for one destination
// domain, from the same happy_eyeballs.ini Haraka reads, without Haraka. Every decision comes
// from the plugin's own modules so the command cannot drift from the plugin.

import fs from 'node:fs'
import { createRequire } from 'node:module'
import net from 'node:net'
import path from 'node:path'
import { getServers as systemDnsServers } from 'node:dns'
import { parseArgs } from 'node:util'

import type { Family } from './classify'
import { isDnsServer, parseSettings, type RawIni, type Settings } from './config'
import { HealthCache } from './health'
import { describeError } from './errors'
import { seededRandom } from './order'
import { describePlan, type Plan } from './plan'
import {
  type AttemptOutcome,
  describeFailures,
  describeTimeline,
  raceConnect,
  type RaceResult,
  type RaceTarget,
} from './race'
import { type DnsClient, makeDnsClient, type Resolution, toAsciiDomain } from './resolve'
import { showStatus } from './delivery'
import { routeDomain } from './route'

export interface CliOutput {
  write(chunk: string): unknown
}

export interface CliIo {
  stdout: CliOutput
  stderr: CliOutput
  /** stderr is a terminal: progress may be an animated spinner. */
  isTTY?: boolean
}

const PROG = 'haraka-happy-eyeballs'
const CONFIG_FILE = 'happy_eyeballs.ini'
/** A phase shows progress only when it takes longer than this. */
const PROGRESS_DELAY_MS = 300
const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏']

export const USAGE = `Usage: ${PROG} <command> <domain> [options]

Shows what the Haraka happy-eyeballs plugin does for mail to <domain>, with the
happy_eyeballs.ini Haraka would read (package defaults, then --config overrides).

Commands:
  plan <domain>     resolve the MX hosts and print the plugin's plan: MX hosts with
                    preference, kept addresses in connect order, filtered addresses
                    with the reason, DNS errors, and the outcome (deliver, defer,
                    bounce, null MX)
  probe <domain>    the plan, then plain TCP connects (no SMTP) to the planned
                    addresses: connect time or error per address, reachability per
                    family, and the address the plugin's race would choose

Options:
  --config DIR      Haraka config directory holding happy_eyeballs.ini
  --dns HOST:PORT   DNS server(s) to ask, IP, IP:PORT or [IPv6]:PORT, comma
                    separated (overrides [dns] servers)
  --port N          port to probe (default: [main] port, 25)
  --timeout MS      probe: bound on the race and on each further connect
                    (default: [race] deadline_ms)
  --json            print one JSON object instead of text
  -h, --help        show this help

Exit status: 0 deliverable plan (plan) or an address connected (probe);
1 defer, bounce, null MX, DNS unreachable or nothing connected; 2 usage error.
`

class UsageError extends Error {}

// ---------------------------------------------------------------------------------------
// Arguments

interface Options {
  command: 'plan' | 'probe'
  domain: string
  configDir?: string
  dns?: string[]
  port?: number
  timeoutMs?: number
  json: boolean
}

function wholeNumber(text: string, min: number, max: number): number | undefined {
  const n = /^\d+$/.test(text.trim()) ? Number(text.trim()) : NaN
  return Number.isSafeInteger(n) && n >= min && n <= max ? n : undefined
}

/** The domain as the plugin would look it up (A-label, lower case), or undefined. */
export function validDomain(input: string): string | undefined {
  const ascii = toAsciiDomain(input)
  if (!ascii || net.isIP(ascii)) return undefined
  const label = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/
  return ascii.split('.').every((l) => label.test(l)) ? ascii : undefined
}

/** A one-line message naming the offending option, out of a node:util parseArgs error. */
function parseArgsProblem(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown }
  const message = String(e?.message ?? err)
  // `'--port <value>'`, `'-h, --help'`: the option as the user would type it.
  const quoted = /'(-[^']*)'/.exec(message)?.[1] ?? ''
  const option =
    quoted
      .replace(/ <value>$/, '')
      .split(', ')
      .pop() ?? quoted
  switch (e?.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${option}`
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (/does not take an argument/.test(message)) return `option ${option} takes no value`
      return `option ${option} needs a value`
    default:
      return message.split('\n')[0]
  }
}

/** undefined means: print the help. */
function parseOptions(argv: string[]): Options | undefined {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: 'string' },
        dns: { type: 'string' },
        port: { type: 'string' },
        timeout: { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    })
  } catch (err) {
    throw new UsageError(parseArgsProblem(err))
  }
  const { values, positionals } = parsed
  if (values.help || positionals[0] === 'help') return undefined

  const [command, domainArg, ...extra] = positionals
  if (!command) throw new UsageError('missing command: plan or probe')
  if (command !== 'plan' && command !== 'probe') {
    throw new UsageError(`unknown command '${command}': use plan or probe`)
  }
  if (domainArg === undefined || domainArg.trim() === '')
    throw new UsageError(`missing domain: ${command} <domain>`)
  if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}'`)
  const domain = validDomain(domainArg)
  if (!domain) throw new UsageError(`invalid domain '${domainArg}'`)

  const opts: Options = { command, domain, json: values.json }

  if (values.config !== undefined) opts.configDir = values.config
  if (values.dns !== undefined) {
    const servers = values.dns
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
    const wrong = servers.find((s) => !isDnsServer(s))
    if (!servers.length || wrong !== undefined) {
      throw new UsageError(`bad --dns '${wrong ?? values.dns}': expected IP, IP:PORT or [IPv6]:PORT`)
    }
    opts.dns = servers
  }
  if (values.port !== undefined) {
    const port = wholeNumber(values.port, 1, 65535)
    if (port === undefined) throw new UsageError(`bad --port '${values.port}': expected 1 to 65535`)
    opts.port = port
  }
  if (values.timeout !== undefined) {
    const ms = wholeNumber(values.timeout, 1, 600000)
    if (ms === undefined) throw new UsageError(`bad --timeout '${values.timeout}': expected 1 to 600000 ms`)
    opts.timeoutMs = ms
  }
  return opts
}

// ---------------------------------------------------------------------------------------
// Config: read exactly as Haraka reads a packaged plugin's ini

interface HarakaConfig {
  root_path: string
  overrides_path?: string
  get(name: string, type: string): unknown
  module_config(defaultsPath: string, overridesPath?: string): HarakaConfig
  stop_watching(name: string): void
}

/** The package root: dist/lib/cli.js → ../.. (holds config/happy_eyeballs.ini). */
const PACKAGE_ROOT = path.resolve(__dirname, '..', '..')

function loadRawIni(configDir: string | undefined, warn: (msg: string) => void): RawIni {
  let overrides: string | undefined
  if (configDir !== undefined) {
    const dir = path.resolve(configDir)
    if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory())
      throw new UsageError(`--config '${configDir}' is not a directory`)
    // A Haraka install directory (with config/ inside) is taken for its config directory.
    const nested = path.join(dir, 'config')
    overrides =
      !fs.existsSync(path.join(dir, CONFIG_FILE)) && fs.existsSync(path.join(nested, CONFIG_FILE))
        ? nested
        : dir
    if (!fs.existsSync(path.join(overrides, CONFIG_FILE))) {
      warn(`no ${CONFIG_FILE} in ${overrides}: using the package defaults`)
    }
  }

  // Loaded here, not at the top: haraka-config reads and watches its config dir on load.
  const harakaConfig = createRequire(__filename)('haraka-config') as HarakaConfig
  // What Haraka does for a packaged plugin: the package's config/ gives the defaults, the
  // Haraka config dir overrides key by key. Set explicitly so HARAKA_TEST_DIR/HARAKA in the
  // environment cannot redirect either directory.
  const cfg = harakaConfig.module_config(PACKAGE_ROOT)
  cfg.root_path = path.join(PACKAGE_ROOT, 'config')
  cfg.overrides_path = overrides
  const raw = cfg.get(CONFIG_FILE, 'ini') as RawIni
  if (overrides) {
    // One read is all a command needs: drop the reload watcher on the caller's directory.
    const watched = harakaConfig.module_config(PACKAGE_ROOT)
    watched.root_path = overrides
    watched.stop_watching(CONFIG_FILE)
  }
  return raw
}

// ---------------------------------------------------------------------------------------
// Progress on stderr

class Progress {
  private text = ''
  private shown = false
  private frame = 0
  private delay: NodeJS.Timeout | undefined
  private spin: NodeJS.Timeout | undefined

  constructor(
    private readonly out: CliOutput,
    private readonly tty: boolean,
  ) {}

  /** Starts a phase or renames the running one; nothing is written for a quick phase. */
  update(text: string): void {
    if (text === this.text) return
    this.text = text
    if (this.shown) {
      if (this.tty) this.draw()
      else this.out.write(`${text}\n`)
      return
    }
    if (!this.delay) this.delay = setTimeout(() => this.show(), PROGRESS_DELAY_MS)
  }

  private show(): void {
    this.delay = undefined
    this.shown = true
    if (!this.tty) {
      this.out.write(`${this.text}\n`)
      return
    }
    this.draw()
    this.spin = setInterval(() => this.draw(), 80)
  }

  private draw(): void {
    this.out.write(`\r${SPINNER[this.frame++ % SPINNER.length]} ${this.text}\x1b[K`)
  }

  /** Ends the phase; a spinner line is wiped so the result starts on a clean line. */
  end(): void {
    clearTimeout(this.delay)
    clearInterval(this.spin)
    if (this.shown && this.tty) this.out.write('\r\x1b[K')
    this.delay = this.spin = undefined
    this.shown = false
    this.text = ''
  }
}

// ---------------------------------------------------------------------------------------
// Plan

/**
 * Answers each query once, so the plugin's route and the plan shown come from the same DNS
 * answers, and names the query in progress.
 */
function memoDns(dns: DnsClient, onQuery: (text: string) => void): DnsClient {
  const seen = new Map<string, Promise<unknown>>()
  const once = <T>(key: string, text: string, run: () => Promise<T>): Promise<T> => {
    let p = seen.get(key) as Promise<T> | undefined
    if (!p) {
      onQuery(text)
      p = run()
      seen.set(key, p)
    }
    return p
  }
  return {
    resolveMx: (name) => once(`MX ${name}`, `resolving ${name} MX…`, () => dns.resolveMx(name)),
    resolve6: (name) => once(`AAAA ${name}`, `resolving ${name} addresses…`, () => dns.resolve6(name)),
    resolve4: (name) => once(`A ${name}`, `resolving ${name} addresses…`, () => dns.resolve4(name)),
  }
}

type Outcome = 'deliver' | 'defer' | 'bounce' | 'null-mx'

interface PlanReport {
  domain: string
  resolution: Resolution
  plan?: Plan
  outcome: Outcome
  status?: string
  reason?: string
}

async function buildPlan(
  domain: string,
  settings: Settings,
  dns: DnsClient,
  random: () => number,
): Promise<PlanReport> {
  const health = new HealthCache({ ttlMs: settings.cache.ttlS * 1000, maxEntries: settings.cache.maxEntries })
  // No racer: the record is the plugin's answer to Haraka before any connect.
  const record = await routeDomain(domain, { settings, dns, health, random })
  const d = record.decision
  const report: PlanReport = { domain: record.domain, resolution: record.resolution, outcome: d.action }
  if (record.plan) report.plan = record.plan
  if (d.action !== 'deliver') {
    report.status = showStatus(d.status)
    report.reason = d.reason
  }
  return report
}

/** A temporary failure because no DNS server answered at all, as opposed to a SERVFAIL. */
function dnsUnreachable(resolution: Resolution): string | undefined {
  if (resolution.kind !== 'temporary') return undefined
  return /\b(ECONNREFUSED|ETIMEOUT)\b/.exec(resolution.detail)?.[1]
}

interface PlanJson {
  domain: string
  outcome: Outcome
  status?: string
  reason?: string
  kept: Array<{ address: string; family: Family; exchange: string; preference: number }>
  filtered: Array<{ address: string; exchange: string; reason: string }>
  dnsErrors: string[]
  mx: Array<{ exchange: string; preference: number; addresses: string[]; errors: string[] }>
  implicitMx: boolean
}

function planJson(r: PlanReport): PlanJson {
  const out: PlanJson = {
    domain: r.domain,
    outcome: r.outcome,
    kept: [],
    filtered: [],
    dnsErrors: [],
    mx: [],
    implicitMx: r.resolution.kind === 'hosts' && r.resolution.implicit,
  }
  if (r.status !== undefined) out.status = r.status
  if (r.reason !== undefined) out.reason = r.reason
  if (r.plan) {
    out.kept = r.plan.kept.map((c) => ({
      address: c.address,
      family: c.family,
      exchange: c.exchange,
      preference: c.preference,
    }))
    out.filtered = r.plan.filtered.map((f) => ({
      address: f.address,
      exchange: f.exchange,
      reason: f.reason,
    }))
    out.dnsErrors = r.plan.dnsErrors.slice()
  }
  if (r.resolution.kind === 'hosts') {
    out.mx = r.resolution.hosts.map((h) => ({
      exchange: h.exchange,
      preference: h.preference,
      addresses: h.addresses.slice(),
      errors: h.errors.slice(),
    }))
  }
  return out
}

const pad = (s: string, n: number): string => (s.length >= n ? s : s + ' '.repeat(n - s.length))

function planText(r: PlanReport, port: number): string {
  const lines: string[] = []
  const res = r.resolution
  if (res.kind === 'hosts') {
    lines.push(
      res.implicit
        ? `${r.domain}: no MX records, the domain itself is the implicit MX (RFC 5321 §5.1)`
        : `${r.domain}: MX hosts`,
    )
    for (const h of res.hosts) {
      const addrs = h.addresses.length ? h.addresses.join(', ') : 'no addresses'
      const errs = h.errors.length ? ` (${h.errors.join(', ')})` : ''
      lines.push(`  ${pad(String(h.preference), 5)} ${h.exchange}: ${addrs}${errs}`)
    }
  }
  const plan = r.plan
  if (plan) {
    lines.push(`connect order (port ${port}):`)
    if (!plan.kept.length) lines.push('  none')
    const width = Math.max(0, ...plan.kept.map((c) => c.address.length))
    plan.kept.forEach((c, i) => {
      lines.push(
        `  ${i + 1}. ${pad(c.address, width)}  ${c.family}  ${c.exchange} (preference ${c.preference})`,
      )
    })
    if (plan.filtered.length) {
      lines.push('filtered:')
      for (const f of plan.filtered) lines.push(`  ${f.address} of ${f.exchange}: ${f.reason}`)
    }
    if (plan.dnsErrors.length) {
      lines.push('dns errors:')
      for (const e of plan.dnsErrors) lines.push(`  ${e}`)
    }
    lines.push(`log: ${describePlan(plan)}`)
  }
  switch (r.outcome) {
    case 'deliver': {
      const n = plan?.kept.length ?? 0
      lines.push(`outcome: deliver (${n} address${n === 1 ? '' : 'es'}, ${plan?.kept[0]?.address} first)`)
      break
    }
    case 'null-mx':
      lines.push(`outcome: null MX: ${r.domain} accepts no mail (Haraka bounces ${r.status})`)
      break
    default:
      lines.push(`outcome: ${r.outcome} ${r.status}: ${r.reason}`)
  }
  return lines.join('\n') + '\n'
}

// ---------------------------------------------------------------------------------------
// Probe

interface AddressProbe {
  target: RaceTarget
  /** What the race did with this address; 'not tried' when it never started it. */
  race: AttemptOutcome | 'not tried'
  raceStartMs?: number
  connected: boolean
  /** Time to connect, or until the error. */
  ms?: number
  error?: string
}

type Reachability = 'reachable' | 'unreachable' | 'none'

interface ProbeReport {
  port: number
  attemptDelayMs: number
  timeoutMs: number
  raceEnabled: boolean
  addresses: AddressProbe[]
  families: Record<Family, Reachability>
  chosen?: RaceTarget
  timeline: string
  /** The deferral the plugin would send when nothing connected. */
  failure?: string
}

const noop = (): void => {}

function connectTo(target: RaceTarget): net.Socket {
  return net.connect({
    host: target.address,
    port: target.port,
    ...(target.bind ? { localAddress: target.bind } : {}),
  })
}

/** One connect, bounded by timeoutMs; the socket is always destroyed. */
function connectOnce(target: RaceTarget, timeoutMs: number): Promise<Omit<AddressProbe, 'target' | 'race'>> {
  return new Promise((resolve) => {
    const t0 = performance.now()
    const ms = (): number => Math.round(performance.now() - t0)
    let socket: net.Socket
    try {
      socket = connectTo(target)
    } catch (err) {
      resolve({ connected: false, ms: ms(), error: describeError(err) })
      return
    }
    const done = (result: Omit<AddressProbe, 'target' | 'race'>): void => {
      clearTimeout(timer)
      socket.removeAllListeners('connect')
      socket.on('error', noop)
      socket.destroy()
      resolve(result)
    }
    const timer = setTimeout(
      () => done({ connected: false, ms: ms(), error: `no answer in ${timeoutMs} ms` }),
      timeoutMs,
    )
    socket.once('connect', () => done({ connected: true, ms: ms() }))
    socket.once('error', (err: unknown) => done({ connected: false, ms: ms(), error: describeError(err) }))
  })
}

async function probePlan(
  plan: Plan,
  settings: Settings,
  timeoutMs: number,
  progress: Progress,
): Promise<ProbeReport> {
  // The targets the plugin races: its port, and a bind address per family.
  const targets: RaceTarget[] = plan.kept.map((c) => ({
    ...c,
    port: settings.port,
    ...(settings.bind[c.family] ? { bind: settings.bind[c.family] } : {}),
  }))
  const s = (n: number): string => `${n} address${n === 1 ? '' : 'es'}`

  progress.update(`probing ${s(targets.length)}…`)
  let result: RaceResult<net.Socket>
  try {
    result = await raceConnect(targets, {
      attemptDelayMs: settings.race.attemptDelayMs,
      groupDelayMs: settings.race.groupDelayMs,
      deadlineMs: timeoutMs,
      connect: connectTo,
    })
    const winner = result.winner?.socket
    winner?.on('error', noop)
    winner?.destroy()

    // attempts[i] is targets[i]: the race starts them in list order.
    const probes: AddressProbe[] = targets.map((target, i) => {
      const a = result.attempts[i]
      if (!a) return { target, race: 'not tried', connected: false }
      const took = a.endMs === undefined ? undefined : a.endMs - a.startMs
      const base: AddressProbe = { target, race: a.outcome, raceStartMs: a.startMs, connected: false }
      if (a.outcome === 'connected') return { ...base, connected: true, ms: took }
      if (a.outcome === 'failed' || a.outcome === 'timed out') return { ...base, ms: took, error: a.error }
      return base
    })

    // Addresses the race cancelled or never reached still get an answer of their own.
    const rest = probes.filter((p) => p.race === 'cancelled' || p.race === 'not tried')
    if (rest.length) {
      progress.update(`probing ${s(rest.length)} the race did not finish…`)
      const answers = await Promise.all(rest.map((p) => connectOnce(p.target, timeoutMs)))
      rest.forEach((p, i) => Object.assign(p, answers[i]))
    }

    const families = {} as Record<Family, Reachability>
    for (const f of ['ipv4', 'ipv6'] as const) {
      const mine = probes.filter((p) => p.target.family === f)
      families[f] = !mine.length ? 'none' : mine.some((p) => p.connected) ? 'reachable' : 'unreachable'
    }

    // Without racing, Haraka tries the plan in order and keeps the first that connects.
    const chosen = settings.race.enabled ? result.winner?.target : probes.find((p) => p.connected)?.target
    const report: ProbeReport = {
      port: settings.port,
      attemptDelayMs: settings.race.attemptDelayMs,
      timeoutMs,
      raceEnabled: settings.race.enabled,
      addresses: probes,
      families,
      timeline: describeTimeline(result),
    }
    if (chosen) report.chosen = chosen
    else {
      const untried = targets.slice(result.attempts.length)
      report.failure = `no MX address of ${plan.domain} answered: ${describeFailures(result, untried)}`
    }
    return report
  } finally {
    progress.end()
  }
}

function probeResultText(p: AddressProbe): string {
  if (p.connected) return `connected in ${p.ms} ms`
  // A timeout's text already says how long.
  if (p.error)
    return p.ms === undefined || p.error.startsWith('no answer') ? p.error : `${p.error} after ${p.ms} ms`
  return 'not tried'
}

function probeRaceText(p: AddressProbe): string {
  if (p.race === 'not tried') return 'race: not tried'
  const at = `+${p.raceStartMs} ms`
  return `race: ${p.race === 'connected' ? 'winner' : p.race} (started ${at})`
}

function probeText(p: ProbeReport): string {
  const lines: string[] = [
    `probe port ${p.port}, attempt delay ${p.attemptDelayMs} ms, timeout ${p.timeoutMs} ms` +
      (p.raceEnabled ? '' : ' (racing disabled in the config)'),
  ]
  const width = Math.max(0, ...p.addresses.map((a) => a.target.address.length))
  const results = p.addresses.map(probeResultText)
  const rwidth = Math.max(0, ...results.map((r) => r.length))
  p.addresses.forEach((a, i) => {
    lines.push(
      `  ${pad(a.target.address, width)}  ${a.target.family}  ${pad(results[i], rwidth)}  ${probeRaceText(a)}`,
    )
  })
  lines.push(`ipv4: ${p.families.ipv4}`, `ipv6: ${p.families.ipv6}`)
  if (p.timeline) lines.push(`race: ${p.timeline}`)
  if (p.chosen) {
    const how = p.raceEnabled
      ? `the race winner with a ${p.attemptDelayMs} ms attempt delay`
      : 'the first address in plan order that connects'
    lines.push(`chosen: ${p.chosen.address} (${p.chosen.exchange}, ${p.chosen.family}): ${how}`)
  } else {
    lines.push(`chosen: none; the plugin would defer 4.4.1: ${p.failure}`)
  }
  return lines.join('\n') + '\n'
}

function probeJson(p: ProbeReport): object {
  return {
    port: p.port,
    attemptDelayMs: p.attemptDelayMs,
    timeoutMs: p.timeoutMs,
    raceEnabled: p.raceEnabled,
    addresses: p.addresses.map((a) => ({
      address: a.target.address,
      family: a.target.family,
      exchange: a.target.exchange,
      preference: a.target.preference,
      connected: a.connected,
      ...(a.ms !== undefined ? { ms: a.ms } : {}),
      ...(a.error !== undefined ? { error: a.error } : {}),
      race: a.race,
      ...(a.raceStartMs !== undefined ? { raceStartMs: a.raceStartMs } : {}),
    })),
    families: p.families,
    chosen: p.chosen
      ? { address: p.chosen.address, family: p.chosen.family, exchange: p.chosen.exchange }
      : null,
    timeline: p.timeline,
    ...(p.failure ? { failure: p.failure } : {}),
  }
}

// ---------------------------------------------------------------------------------------
// Entry point

async function run(argv: string[], io: CliIo): Promise<number> {
  const opts = parseOptions(argv)
  if (!opts) {
    io.stdout.write(USAGE)
    return 0
  }
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
  let report: PlanReport
  try {
    report = await buildPlan(opts.domain, settings, dns, seededRandom(seed))
  } finally {
    progress.end()
  }

  const unreachable = dnsUnreachable(report.resolution)
  if (unreachable) {
    const servers = settings.dns.servers.length
      ? settings.dns.servers.join(', ')
      : `${systemDnsServers().join(', ') || 'none'} (system)`
    const consequence = `the plugin would defer ${report.status}`
    io.stderr.write(
      `${PROG}: DNS server ${servers} unreachable (${unreachable}) resolving ${report.domain}; ${consequence}\n`,
    )
  }

  let probe: ProbeReport | undefined
  if (opts.command === 'probe' && report.outcome === 'deliver' && report.plan) {
    probe = await probePlan(report.plan, settings, opts.timeoutMs ?? settings.race.deadlineMs, progress)
  }

  if (opts.json) {
    const out: object = {
      ...planJson(report),
      ...(opts.command === 'probe' ? { probe: probe ? probeJson(probe) : null } : {}),
    }
    io.stdout.write(JSON.stringify(out, null, 2) + '\n')
  } else if (!unreachable) {
    io.stdout.write(planText(report, settings.port))
    if (probe) io.stdout.write(probeText(probe))
    else if (opts.command === 'probe') io.stdout.write('probe: nothing to connect to\n')
  }

  if (opts.command === 'probe') return probe?.addresses.some((a) => a.connected) ? 0 : 1
  return report.outcome === 'deliver' ? 0 : 1
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
