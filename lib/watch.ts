// Watched destinations (`[watch] domains[]`): in the background, each round resolves every
// watched domain and probes each address its plan keeps, the way delivery reaches it (TCP,
// then the server's greeting; after a 220 only QUIT), never a filtered address. The outcomes
// feed the health cache as a race's would, so the first message after an IPv6 outage is
// already routed right, and the metrics, so the operator sees the outage before a message
// waits. Rounds never overlap: the next starts `interval` after the last one ended. At most
// `concurrency` lookups and probes run at once. Timers are unref'd; nothing here throws.

import type { Family } from './classify'
import type { Settings } from './config'
import { describeUnusable } from './delivery'
import { describeError } from './errors'
import type { HostFamilies } from './connectivity'
import type { HealthCache } from './health'
import { type Learned, learnFromRace } from './learned'
import { attemptOutcome, type AttemptOutcomeLabel } from './metrics'
import { planAddresses } from './plan'
import { planningOptions, queryPlanOf } from './planning'
import type { PolicyView } from './policy-memory'
import type { AttemptRecord, RaceResult, RaceSocket, RaceTarget } from './race'
import { type DnsClient, type Resolution, type ResolveOptions, resolveDestination } from './resolve'
import { recordRace, targetsOf } from './route'
import { probeGreeting } from './greeting-probe'

export interface WatchConfig {
  domains: readonly string[]
  intervalMs: number
  concurrency: number
  /** Per probe: the TCP connect and the greeting. */
  timeoutMs: number
}

/** What one probe of one address found. */
export interface AddressWatch {
  address: string
  family: Family
  exchange: string
  outcome: AttemptOutcomeLabel
  /** Time to the greeting (or to the error). */
  ms?: number
  error?: string
}

export interface FamilyWatch {
  /** Some address of the family greeted. */
  up: boolean
  /** The fastest greeting of the family, ms; absent when none did. */
  connectMs?: number
}

/** One domain's latest round. */
export interface DomainWatch {
  domain: string
  /** Epoch ms when its probes ended. */
  at: number
  /** Why nothing was probed: a DNS failure, NXDOMAIN, a null MX, every address filtered. */
  problem?: string
  probes: AddressWatch[]
  /** Families the plan kept addresses of. */
  families: Partial<Record<Family, FamilyWatch>>
}

export type WatchLog = (level: 'info' | 'warn' | 'error', msg: string) => void

export interface WatchDeps {
  /** The current settings, DNS client and caches: a reload may replace them between rounds. */
  settings(): Settings
  dns(): DnsClient
  health(): HealthCache | undefined
  senderPolicy?(): PolicyView | undefined
  /** The families this host can send from now: not queried, not probed where unusable. */
  hostFamilies?(): HostFamilies | undefined
  /** Connect times and IPv6 egress learnt across destinations: probes feed them as races do. */
  learned?(): Learned | undefined
  /** Each domain's result, as soon as its probes ended. */
  onResult?(result: DomainWatch): void
  log: WatchLog
  /** For tests: the resolver and the probe of one address. */
  resolve?(domain: string, dns: DnsClient, options: ResolveOptions): Promise<Resolution>
  probe?(target: RaceTarget, timeoutMs: number): Promise<RaceResult<RaceSocket>>
  /** For tests: epoch ms. */
  now?(): number
}

/** Runs at most `n` of the functions given to it at once, the rest in order as slots free. */
export function limiter(n: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let active = 0
  const waiting: Array<() => void> = []
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    if (active < n) active++
    // A finishing run hands its slot straight to the next waiting one.
    else await new Promise<void>((resolve) => waiting.push(resolve))
    try {
      return await fn()
    } finally {
      const next = waiting.shift()
      if (next) next()
      else active--
    }
  }
}

const probeOutcome = (a: AttemptRecord | undefined): AttemptOutcomeLabel => {
  if (!a) return 'failed'
  if (a.outcome === 'failed' && a.greeting !== undefined) return 'greeting_refused'
  return attemptOutcome(a.outcome, a.code, a.error)
}

export class Watcher {
  readonly config: WatchConfig
  private readonly deps: WatchDeps
  private timer: NodeJS.Timeout | undefined
  private running = false
  private stopped = false
  private readonly latest = new Map<string, DomainWatch>()

  constructor(config: WatchConfig, deps: WatchDeps) {
    this.config = config
    this.deps = deps
  }

  /** Starts the first round at once, then one `intervalMs` after each round ends. */
  start(): void {
    if (this.stopped || this.timer || this.running) return
    this.schedule(0)
  }

  /** No round starts after this; a round under way finishes without reporting. */
  stop(): void {
    this.stopped = true
    clearTimeout(this.timer)
    this.timer = undefined
  }

  /** A round is under way. */
  get isRunning(): boolean {
    return this.running
  }

  /** Not stopped: rounds go on. */
  get active(): boolean {
    return !this.stopped
  }

  /** Each watched domain's latest result. */
  results(): DomainWatch[] {
    return [...this.latest.values()]
  }

  /** One round over every domain; resolves when it ended, never rejects. */
  async round(): Promise<DomainWatch[]> {
    const limit = limiter(Math.max(1, this.config.concurrency))
    const results = await Promise.all(this.config.domains.map((d) => this.watchDomain(d, limit)))
    return results.filter((r): r is DomainWatch => r !== undefined)
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => {
      this.timer = undefined
      void this.tick()
    }, ms)
    this.timer.unref()
  }

  private async tick(): Promise<void> {
    if (this.stopped || this.running) return
    this.running = true
    try {
      await this.round()
    } catch (err) {
      this.deps.log('error', `watch round failed: ${describeError(err)}`)
    } finally {
      this.running = false
      if (!this.stopped) this.schedule(this.config.intervalMs)
    }
  }

  private async watchDomain(
    domain: string,
    limit: <T>(fn: () => Promise<T>) => Promise<T>,
  ): Promise<DomainWatch | undefined> {
    const now = this.deps.now ?? Date.now
    let result: DomainWatch
    try {
      result = await this.probeDomain(domain, limit)
    } catch (err) {
      result = {
        domain,
        at: now(),
        problem: `internal error: ${describeError(err)}`,
        probes: [],
        families: {},
      }
      this.deps.log('error', `watch ${domain}: ${result.problem}`)
    }
    if (this.stopped) return undefined
    this.logChanges(this.latest.get(domain), result)
    this.latest.set(domain, result)
    try {
      this.deps.onResult?.(result)
    } catch (err) {
      this.deps.log('error', `watch ${domain}: could not report the result: ${describeError(err)}`)
    }
    return result
  }

  /** One line when a family goes down or comes back, or a domain stops being probed. */
  private logChanges(before: DomainWatch | undefined, now: DomainWatch): void {
    if (now.problem) {
      if (before?.problem !== now.problem) this.deps.log('warn', `watch ${now.domain}: ${now.problem}`)
      return
    }
    for (const family of ['ipv6', 'ipv4'] as const) {
      const was = before?.families[family]?.up
      const is = now.families[family]?.up
      if (is === undefined || is === was) continue
      if (is) {
        if (was === false) this.deps.log('info', `watch ${now.domain}: ${family} up again`)
        continue
      }
      const errors = now.probes
        .filter((p) => p.family === family)
        .map((p) => `${p.address} ${p.error ?? p.outcome}`)
        .join('; ')
      this.deps.log('warn', `watch ${now.domain}: ${family} down (${errors})`)
    }
  }

  private async probeDomain(
    domain: string,
    limit: <T>(fn: () => Promise<T>) => Promise<T>,
  ): Promise<DomainWatch> {
    const now = this.deps.now ?? Date.now
    const settings = this.deps.settings()
    const dns = this.deps.dns()
    const resolve = this.deps.resolve ?? resolveDestination
    const hostFamilies = this.deps.hostFamilies?.()
    const query = queryPlanOf(hostFamilies, settings)
    const resolution = await limit(() => resolve(domain, dns, query ? { families: query.families } : {}))
    const without = (problem: string): DomainWatch => ({
      domain,
      at: now(),
      problem,
      probes: [],
      families: {},
    })
    switch (resolution.kind) {
      case 'null-mx':
        return without(`${resolution.domain} has a null MX`)
      case 'no-domain':
        return without(resolution.detail)
      case 'temporary':
        return without(`DNS lookup failed: ${resolution.detail}`)
    }

    // Planned as routeDomain plans a message: the same options, built by the same function.
    const known = this.deps.health()
    const senderPolicy = this.deps.senderPolicy?.()
    const learned = this.deps.learned?.()
    const plan = planAddresses(
      resolution.domain,
      resolution.hosts,
      planningOptions({
        settings,
        ...(known ? { health: known } : {}),
        ...(senderPolicy ? { senderPolicy } : {}),
        ...(hostFamilies ? { hostFamilies } : {}),
        ...(query ? { query } : {}),
        ...(learned ? { learned } : {}),
      }),
    )
    const targets = targetsOf(plan, settings)
    if (!targets.length) {
      const dnsOnly = !plan.filtered.length && plan.dnsErrors.length
      return without(dnsOnly ? `DNS lookup failed: ${plan.dnsErrors.join(', ')}` : describeUnusable(plan))
    }

    const probe = this.deps.probe ?? probeGreeting
    const { timeoutMs } = this.config
    const races = await Promise.all(targets.map((t) => limit(() => probe(t, timeoutMs))))
    const probes: AddressWatch[] = []
    const families: Partial<Record<Family, FamilyWatch>> = {}
    for (const [i, race] of races.entries()) {
      const target = targets[i]
      const a = race.attempts[0]
      // Connected, but no greeting by the timeout: down to the watch, slow to delivery (a
      // race hands such a socket over only when nothing else answers).
      const silent = a?.outcome === 'connected' && a.greeting === undefined && race.winner !== undefined
      const outcome = silent ? 'timed_out' : probeOutcome(a)
      const ms = silent ? timeoutMs : a?.endMs === undefined ? undefined : a.endMs - a.startMs
      const error = silent ? `no greeting in ${timeoutMs} ms` : a?.error
      probes.push({
        address: target.address,
        family: target.family,
        exchange: target.exchange,
        outcome,
        ...(ms !== undefined ? { ms } : {}),
        ...(error ? { error } : {}),
      })
      const family = (families[target.family] ??= { up: false })
      if (outcome === 'connected') {
        family.up = true
        if (ms !== undefined && (family.connectMs === undefined || ms < family.connectMs))
          family.connectMs = ms
      }
      // A stopped watcher's probes teach nothing: its settings may be gone.
      if (this.stopped) continue
      if (learned) learnFromRace(learned, race, settings.race.attemptDelayMs, now())
      const health = this.deps.health()
      if (!health) continue
      if (silent) {
        const { address, family: f, exchange } = target
        health.record(address, f, exchange, { ok: false, slow: true, latencyMs: timeoutMs, at: now() })
      } else recordRace(health, race, settings.race.attemptDelayMs)
    }
    return { domain, at: now(), probes, families }
  }
}
