// haraka-plugin-happy-eyeballs: the Haraka face. Logic lives in lib/.

import net from 'node:net'

import constants from 'haraka-constants'
import DSN from 'haraka-dsn'

import { parseSettings, type RawIni, type Settings } from './lib/config'
import { bindHarakaOutbound, type HarakaOutbound, type MxClass } from './lib/haraka-outbound'
import { describeError } from './lib/errors'
import { makeDnsClient, type DnsClient } from './lib/resolve'
import { explainedFailure, messageBind, MessageConnects } from './lib/connects'
import { type DeliveryRecord, describeDelivery, RECORD_NOTE } from './lib/delivery'
import { entriesOf, learnFrom, routeDomain } from './lib/route'
import type { PoolSocket } from './lib/client-pool'
import {
  mayFallBack,
  policyDecider,
  recipientsOf,
  refusalDetail,
  refusalsAnswered,
} from './lib/policy-fallback'
import type { RaceTarget } from './lib/race'
import { filterReplies } from './lib/reply-filter'
import {
  compilePatterns,
  DEFAULT_POLICY_PATTERNS,
  describeRefusal,
  mayBePolicyRefusal,
  type NamedPattern,
  noteSwitch,
  type PolicyRefusal,
  switchedHosts,
} from './lib/sender-policy'
import { processMetrics } from './lib/metrics'
import { metricsRole, serveMetrics, stopServingMetrics } from './lib/metrics-server'
import { type WatchConfig, Watcher } from './lib/watch'
import { createRedisClient, describeEndpoint, redisClientOptions, RedisStore } from './lib/redis-store'
import { SharedState, SharingHealthCache, SharingPolicyMemory } from './lib/shared-health'
import { describeHostFamilies, HostConnectivity } from './lib/connectivity'
import { describeEgress } from './lib/egress'
import { SharingConnectTimes, SharingEgressMemory } from './lib/shared-learned'
import { type Learned, learnedGauges } from './lib/learned'
import { recheckEgress, type RecheckOptions } from './lib/egress-recheck'
import { probeGreeting } from './lib/greeting-probe'

type Next = Haraka.Next
type HMail = Haraka.HMail

interface State {
  settings: Settings
  health: SharingHealthCache
  /** MX hosts that refused this sender over IPv6 by policy, for [policy] ttl_s. */
  policyMemory: SharingPolicyMemory
  /** [redis]: the connection and what it was made from (a reload with the same keeps it). */
  redis?: { store: RedisStore; made: string }
  /** The health and policy records every worker and host shares, when [redis] is on. */
  shared?: SharedState
  /** The built-in sender-policy patterns and [policy] patterns[]. */
  policyPatterns: readonly NamedPattern[]
  dns: DnsClient
  outbound: HarakaOutbound
  /** Probes the [watch] domains in the background; absent when none are watched here. */
  watch?: Watcher
  /** The families this host can send from; absent with [main] connectivity_check_s=0. */
  connectivity?: HostConnectivity
  /** Measured connect times: the learnt attempt delay. */
  connectTimes: SharingConnectTimes
  /** This host's IPv6 egress, judged across destinations. */
  egress: SharingEgressMemory
  /** Probes an IPv6 address while egress is impaired ([egress] recheck_s); absent with 0. */
  recheckEgress?: (target: RaceTarget) => void
}

interface Plugin extends Haraka.Plugin {
  load_happy_eyeballs_ini(): void
  happy_eyeballs?: State
}

const LOG_PREFIX = 'happy-eyeballs: '

export function register(this: Plugin): void {
  this.load_happy_eyeballs_ini()
  // Counted first of all (Haraka runs equal priorities in the order they were registered),
  // from Haraka's own error: "Tried all MXs" before the explanation below replaces it.
  this.register_hook('delivered', 'count_delivery', -100)
  this.register_hook('deferred', 'count_deferral', -100)
  this.register_hook('bounce', 'count_bounce', -100)
  this.register_hook('get_mx', 'route_mx', 50)
  // First of all deferred/bounce hooks, wherever config/plugins lists this plugin: every
  // other plugin's hook and Haraka's own "Temp failing" line then read the explained reason.
  this.register_hook('deferred', 'explain_deferral', -100)
  this.register_hook('bounce', 'explain_bounce', -100)
  this.register_hook('delivered', 'explain_delivery')
  processMetrics.healthFrom(() => this.happy_eyeballs?.health.size ?? 0)
  processMetrics.learnedFrom(() => {
    const state = this.happy_eyeballs
    if (!state) return undefined
    return learnedGauges(learnedOf(state), state.connectivity?.current(), state.settings)
  })
}

/** The message each record belongs to, so a refusal seen on a socket reaches its queue notes. */
const messageOf = new WeakMap<MessageConnects, HMail>()

export function load_happy_eyeballs_ini(this: Plugin): void {
  let raw: RawIni = {}
  try {
    raw = this.config.get('happy_eyeballs.ini', 'ini', () => this.load_happy_eyeballs_ini()) as RawIni
  } catch (err) {
    this.logerror(`${LOG_PREFIX}happy_eyeballs.ini unreadable, using defaults: ${describeError(err)}`)
  }
  const { settings, problems } = parseSettings(raw)
  for (const p of problems) this.logwarn(`${LOG_PREFIX}happy_eyeballs.ini: ${p}`)

  try {
    this.happy_eyeballs = buildState(this, settings)
  } catch (err) {
    // Without a state the hook steps aside (CONT): Haraka routes as if the plugin were absent.
    this.logerror(`${LOG_PREFIX}could not apply happy_eyeballs.ini, stepping aside: ${describeError(err)}`)
  }
  try {
    configureWatch(this)
  } catch (err) {
    this.logerror(`${LOG_PREFIX}could not start watching [watch] domains: ${describeError(err)}`)
  }
  serveMetrics(settings.metrics.listen, smtpNodes(this), processMetrics.registry, (level, msg) => {
    if (level === 'info') this.loginfo(LOG_PREFIX + msg)
    else if (level === 'warn') this.logwarn(LOG_PREFIX + msg)
    else this.logerror(LOG_PREFIX + msg)
  })
}

/** smtp.ini `nodes`: whether this Haraka runs a cluster of workers. */
function smtpNodes(plugin: Plugin): unknown {
  try {
    const smtp = plugin.config.get('smtp.ini', 'ini') as { main?: { nodes?: unknown } } | undefined
    return smtp?.main?.nodes
  } catch {
    return undefined
  }
}

export function shutdown(this: Plugin): void {
  this.happy_eyeballs?.watch?.stop()
  void stopServingMetrics()
  this.happy_eyeballs?.redis?.store.close()
}

const sameWatch = (a: WatchConfig, b: WatchConfig): boolean =>
  a.intervalMs === b.intervalMs &&
  a.concurrency === b.concurrency &&
  a.timeoutMs === b.timeoutMs &&
  a.domains.join(',') === b.domains.join(',')

/**
 * Starts, keeps or stops the watcher for [watch]. It runs where mail is delivered: in a single
 * Haraka, or in each cluster worker for its own health cache; never in a cluster master.
 */
function configureWatch(plugin: Plugin): void {
  const state = plugin.happy_eyeballs
  if (!state) return
  const w = state.settings.watch
  const config: WatchConfig = {
    domains: state.settings.enabled ? w.domains : [],
    intervalMs: w.intervalS * 1000,
    concurrency: w.concurrency,
    timeoutMs: w.timeoutMs,
  }
  processMetrics.watchOnly(config.domains)
  if (state.watch && sameWatch(state.watch.config, config)) return
  state.watch?.stop()
  delete state.watch
  if (!config.domains.length) return
  if (metricsRole(smtpNodes(plugin)) === 'master') return
  const log = (level: 'info' | 'warn' | 'error', msg: string): void => {
    if (level === 'info') plugin.loginfo(LOG_PREFIX + msg)
    else if (level === 'warn') plugin.logwarn(LOG_PREFIX + msg)
    else plugin.logerror(LOG_PREFIX + msg)
  }
  // Each round reads the current state: a reload's filters, resolvers and caches apply at once.
  const current = (): State => plugin.happy_eyeballs ?? state
  state.watch = new Watcher(config, {
    settings: () => current().settings,
    dns: () => current().dns,
    health: () => current().health,
    senderPolicy: () => current().policyMemory,
    hostFamilies: () => current().connectivity?.current(),
    learned: () => ({ connectTimes: current().connectTimes, egress: current().egress }),
    onResult: (r) => processMetrics.watched(r),
    log,
  })
  state.watch.start()
  log(
    'info',
    `watching ${config.domains.join(', ')} every ${w.intervalS} s (concurrency ${w.concurrency}, timeout ${w.timeoutMs} ms)`,
  )
}

/**
 * The Redis connection [redis] asks for: the previous one when nothing it was made from
 * changed, else a new one (the old one closed). None when [redis] is off, and none in the
 * master of a Haraka cluster, which delivers nothing: its workers connect.
 */
function redisFor(plugin: Plugin, settings: Settings, previous: State | undefined): State['redis'] {
  const log = (level: 'info' | 'warn', msg: string): void =>
    level === 'info' ? plugin.loginfo(LOG_PREFIX + msg) : plugin.logwarn(LOG_PREFIX + msg)
  let made: string | undefined
  let options: ReturnType<typeof redisClientOptions> | undefined
  if (settings.redis.enabled && metricsRole(smtpNodes(plugin)) !== 'master') {
    let redisIni: unknown
    try {
      redisIni = plugin.config.get('redis.ini', 'ini', () => plugin.load_happy_eyeballs_ini())
    } catch (err) {
      plugin.logwarn(`${LOG_PREFIX}redis.ini unreadable, using [redis] alone: ${describeError(err)}`)
    }
    try {
      // The client's own queue bound leaves reads room beside the writes in flight.
      options = redisClientOptions(settings.redis, redisIni, 2 * REDIS_MAX_PENDING)
      made = JSON.stringify([options, settings.redis.timeoutMs])
    } catch (err) {
      plugin.logerror(`${LOG_PREFIX}haraka-plugin-redis unusable (${describeError(err)}): sharing nothing`)
    }
  }
  if (previous?.redis && previous.redis.made === made) return previous.redis
  previous?.redis?.store.close()
  if (!options || !made) return undefined
  try {
    const store = new RedisStore(createRedisClient(options), {
      timeoutMs: settings.redis.timeoutMs,
      maxPending: REDIS_MAX_PENDING,
      endpoint: describeEndpoint(options),
      log,
      onError: () => processMetrics.redisError(),
    }).start()
    return { store, made }
  } catch (err) {
    plugin.logerror(`${LOG_PREFIX}no Redis client (${describeError(err)}): sharing nothing`)
    return undefined
  }
}

/** Commands in flight to Redis at most: writes beyond it are dropped, never queued. */
const REDIS_MAX_PENDING = 512

function buildState(plugin: Plugin, settings: Settings): State {
  const previous = plugin.happy_eyeballs
  const sameCache =
    previous &&
    previous.settings.cache.ttlS === settings.cache.ttlS &&
    previous.settings.cache.maxEntries === settings.cache.maxEntries
  const health = sameCache
    ? previous.health
    : new SharingHealthCache({ ttlMs: settings.cache.ttlS * 1000, maxEntries: settings.cache.maxEntries })

  const samePolicy =
    previous &&
    previous.settings.policy.ttlS === settings.policy.ttlS &&
    previous.settings.cache.maxEntries === settings.cache.maxEntries
  const policyMemory = samePolicy
    ? previous.policyMemory
    : new SharingPolicyMemory({ ttlMs: settings.policy.ttlS * 1000, maxEntries: settings.cache.maxEntries })
  const redis = redisFor(plugin, settings, previous)
  const shared = redis ? new SharedState(redis.store, settings.redis.prefix) : undefined
  health.shareThrough(shared)
  policyMemory.shareThrough(shared)
  const learned = learnedState(plugin, settings, previous)
  learned.connectTimes.shareThrough(shared)
  learned.egress.shareThrough(shared)
  const compiled = compilePatterns(settings.policy.patterns)
  for (const p of compiled.problems) plugin.logwarn(`${LOG_PREFIX}happy_eyeballs.ini: ${p}`)

  let outbound = previous?.outbound
  if (!outbound) {
    outbound = bindHarakaOutbound((name) => plugin.haraka_require(name), {
      onOutcome: (t, outcome) => {
        plugin.happy_eyeballs?.health.record(t.address, t.family, t.exchange, outcome)
        // Haraka's own IPv6 connect that worked proves IPv6 egress as well as a race does.
        if (outcome.ok && t.family === 'ipv6')
          plugin.happy_eyeballs?.egress.record({ ...t, outcome: 'connected', at: outcome.at })
      },
      log: (level, msg) => {
        if (level === 'info') plugin.loginfo(LOG_PREFIX + msg)
        else if (level === 'warn') plugin.logwarn(LOG_PREFIX + msg)
        else plugin.logerror(LOG_PREFIX + msg)
      },
      watchReplies: (socket, target, record) => watchPolicyReplies(plugin, socket, target, record),
    })
    if (outbound.raceUnavailable)
      plugin.logwarn(`${LOG_PREFIX}not racing connections: ${outbound.raceUnavailable}`)
    if (outbound.inetPrefer) {
      plugin.logwarn(
        `${LOG_PREFIX}outbound.ini inet_prefer=${outbound.inetPrefer} regroups every MX list by family, ` +
          'across MX preference and after the race: set it to default and use [main] prefer',
      )
    }
  }

  return {
    settings,
    health,
    ...(previous?.watch ? { watch: previous.watch } : {}),
    ...learned,
    policyMemory,
    ...(redis ? { redis } : {}),
    ...(shared ? { shared } : {}),
    policyPatterns: [...DEFAULT_POLICY_PATTERNS, ...compiled.patterns],
    ...(settings.egress.recheckS > 0 ? { recheckEgress: egressRechecker(plugin) } : {}),
    dns: makeDnsClient(settings.dns.servers, settings.dns.timeoutMs),
    outbound,
  }
}

/** Connectivity, connect times and egress: kept over a reload unless their settings changed. */
function learnedState(
  plugin: Plugin,
  settings: Settings,
  previous: State | undefined,
): Pick<State, 'connectivity' | 'connectTimes' | 'egress'> {
  const same = <K extends keyof Settings>(...keys: K[]): boolean =>
    Boolean(
      previous && keys.every((k) => JSON.stringify(previous.settings[k]) === JSON.stringify(settings[k])),
    )
  const checkS = settings.connectivityCheckS
  const connectivity =
    checkS <= 0
      ? undefined
      : previous?.connectivity && same('connectivityCheckS', 'bind')
        ? previous.connectivity
        : new HostConnectivity({
            bind: settings.bind,
            checkEveryMs: checkS * 1000,
            onChange: (host) =>
              plugin.loginfo(`${LOG_PREFIX}host connectivity: ${describeHostFamilies(host)}`),
          })
  const connectTimes =
    previous && same('cache')
      ? previous.connectTimes
      : new SharingConnectTimes({ ttlMs: settings.cache.ttlS * 1000, maxEntries: settings.cache.maxEntries })
  const egress =
    previous && same('egress', 'cache')
      ? previous.egress
      : new SharingEgressMemory({
          destinations: settings.egress.ipv6ImpairedAfter,
          windowMs: settings.egress.windowS * 1000,
          maxEntries: settings.cache.maxEntries,
          onChange: (state) =>
            (state.ipv6Impaired ? plugin.logwarn : plugin.loginfo).call(
              plugin,
              LOG_PREFIX + describeEgress(state),
            ),
        })
  return { ...(connectivity ? { connectivity } : {}), connectTimes, egress }
}

/**
 * Entries as Haraka's own HarakaMx: 3.1+ passes an instance of its own class through
 * unchanged, so the very object reaches its client pool (hand-over and per-message records
 * depend on that). A Haraka without one (3.0.x needs none) takes plain objects.
 */
function toMx(state: State, fields: object): object {
  const HarakaMx: MxClass | undefined = state.outbound.HarakaMx
  return HarakaMx ? new HarakaMx(fields) : { ...fields }
}

function answer(plugin: Plugin, hmail: HMail, record: DeliveryRecord, next: Next): void {
  const state = plugin.happy_eyeballs as State
  const d = record.decision
  hmail.notes[RECORD_NOTE] = record
  switch (d.action) {
    case 'deliver': {
      logTo(hmail, 'info', describeDelivery(record))
      const entries = entriesOf(d.targets).map((e) => toMx(state, e))
      // Haraka's connects to these very entries are written to this message's record.
      if (record.connects) {
        record.connects.targets = d.targets
        state.outbound.track?.(entries, d.targets, record.connects)
      }
      return next(constants.ok, entries)
    }
    case 'null-mx':
      logTo(hmail, 'info', describeDelivery(record))
      // Haraka's own null MX path bounces with 5.1.10.
      return next(constants.ok, toMx(state, { priority: 0, exchange: '' }))
    case 'defer':
    case 'bounce':
      logTo(hmail, 'warn', describeDelivery(record))
      return next(d.action === 'defer' ? constants.denysoft : constants.deny, d.reason)
  }
}

export function route_mx(this: Plugin, next: Next, hmail: HMail, domain: string): void {
  let called = false
  const once: Next = (code, msg) => {
    if (called) return
    called = true
    next(code, msg)
  }
  // Whatever went wrong, Haraka routes the message itself: never worse than no plugin.
  const stepAside = (err: unknown): void => {
    logTo(hmail, 'error', `internal error, leaving ${domain} to Haraka: ${describeError(err)}`)
    try {
      once()
    } catch {
      // next() itself failed: nothing is left to answer with
    }
  }
  try {
    // A record from an earlier attempt of this message must not explain this one.
    if (hmail.notes) delete hmail.notes[RECORD_NOTE]
    const state = this.happy_eyeballs
    if (!state?.settings.enabled) return once()
    // A Haraka that would match TLS rules against an IP literal keeps its own routing.
    const keep = state.outbound.keepHarakaRouting?.(hmail)
    if (keep) {
      logTo(hmail, 'info', `leaving ${domain} to Haraka: ${keep}`)
      return once()
    }
    const timeoutMs = (Number(this.timeout) || 30) * 1000
    const bridge = state.outbound.bridge
    const connects = new MessageConnects(domain)
    const switched = switchedHosts(hmail.todo?.notes)
    connects.switchedBefore = switched.map((s) => s.exchange)
    messageOf.set(connects, hmail)
    // Race from the local address Haraka will bind for this message, so it claims the winner.
    const outboundIp = hmail.todo?.notes?.outbound_ip
    const settings = outboundIp
      ? { ...state.settings, bind: messageBind(state.settings.bind, outboundIp) }
      : state.settings
    routeDomain(domain, {
      settings,
      dns: state.dns,
      health: state.health,
      senderPolicy: state.policyMemory,
      switched,
      connects,
      ...(state.shared ? { shared: state.shared } : {}),
      ...(state.connectivity ? { hostFamilies: state.connectivity.current() } : {}),
      learned: learnedOf(state),
      ...(bridge?.racing ? { racer: bridge.racerFor(connects) } : {}),
      ...(state.recheckEgress ? { recheckEgress: state.recheckEgress } : {}),
      // The race gets what is left of 80% of the hook timeout when it starts.
      answerBy: performance.now() + timeoutMs * 0.8,
    })
      .then((record) => {
        if (record.decision.action === 'deliver' && bridge?.ready) bridge.plan(record.decision.targets)
        answer(this, hmail, record, once)
      })
      .catch(stepAside)
  } catch (err) {
    stepAside(err)
  }
}

/** What this state learns across destinations: connect times and IPv6 egress. */
function learnedOf(state: State): Learned {
  return { connectTimes: state.connectTimes, egress: state.egress }
}

/** Rechecks impaired IPv6 egress from the plugin's current state, made once per state. */
const egressRechecker =
  (plugin: Plugin) =>
  (target: RaceTarget): void => {
    const state = plugin.happy_eyeballs
    if (state) void recheckEgress(target, egressRecheck(plugin, state))
  }

/** A recheck of impaired IPv6 egress from this state: it feeds what a race would feed. */
function egressRecheck(plugin: Plugin, state: State): RecheckOptions {
  const { race, egress } = state.settings
  const learned = learnedOf(state)
  return {
    egress: state.egress,
    intervalMs: egress.recheckS * 1000,
    timeoutMs: race.deadlineMs,
    probe: probeGreeting,
    onResult: (result) => learnFrom(state.health, learned, result, race.attemptDelayMs),
    log: (level, msg) => (level === 'info' ? plugin.loginfo : plugin.logwarn).call(plugin, LOG_PREFIX + msg),
  }
}

/** Logs through the message's logger; a broken logger must not stop the answer. */
function logTo(hmail: HMail, level: 'info' | 'warn' | 'error', msg: string): void {
  try {
    if (level === 'info') hmail.loginfo(LOG_PREFIX + msg)
    else if (level === 'warn') hmail.logwarn(LOG_PREFIX + msg)
    else hmail.logerror(LOG_PREFIX + msg)
  } catch {
    // nothing better to log to
  }
}

/** The record of a message this plugin routed, if it has one. */
const recordOf = (hmail: HMail): DeliveryRecord | undefined =>
  hmail?.notes?.[RECORD_NOTE] as DeliveryRecord | undefined

/**
 * Puts this plugin's status and reason on every recipient's DSN: the one its get_mx answer
 * asked for, or, when Haraka ran out of the planned addresses ("Tried all MXs"), what
 * happened to each address for this message.
 */
function applyPendingDsn(hmail: HMail, err: string, finalBounce: boolean): string | undefined {
  const record = recordOf(hmail)
  if (!record) return undefined
  const pending = explainedFailure(record, err)
  if (!pending) return undefined
  const { status, reason } = pending
  const code = finalBounce ? 550 : status.code
  for (const rcpt of hmail.todo.rcpt_to) {
    hmail.extend_rcpt_with_dsn(rcpt, DSN.create(code, reason, status.subject, status.detail))
  }
  return reason
}

/**
 * Installs the sender-policy reply filter on an IPv6 session of a planned message whose MX
 * host has IPv4 addresses in the plan; every other session is left unfiltered.
 */
function watchPolicyReplies(
  plugin: Plugin,
  socket: PoolSocket,
  target: RaceTarget,
  record: MessageConnects,
): void {
  const state = plugin.happy_eyeballs
  if (!state?.settings.policy.enabled || !mayFallBack(target, record)) return
  const onRefusal = (refusal: PolicyRefusal): void => {
    const text = describeRefusal(refusal)
    state.policyMemory.remember(refusal.exchange, text, refusal.at)
    const hmail = messageOf.get(record)
    if (!hmail) return
    // Persisted with the queue file Haraka writes for split recipients; in memory otherwise.
    const notes = hmail.todo?.notes as Record<string, unknown> | undefined
    if (notes && typeof notes === 'object')
      noteSwitch(notes, { exchange: refusal.exchange, refusal: text, at: refusal.at })
    logTo(
      hmail,
      'info',
      `${text}${refusal.rewritten ? ' (given to Haraka as a 4xx)' : ''}; retrying over IPv4`,
    )
  }
  filterReplies(
    socket,
    policyDecider(target, record, state.policyPatterns, onRefusal),
    (err) =>
      plugin.logerror(`${LOG_PREFIX}reply filter failed, reply passed unchanged: ${describeError(err)}`),
    mayBePolicyRefusal,
  )
}

/**
 * A deferral caused by IPv6 sender-policy refusals of this attempt: retried at once (the next
 * attempt plans the refusing hosts without IPv6), with the refusal as the reason. Undefined
 * when the deferral is not theirs.
 */
function policyRetry(hmail: HMail, params: { err?: string; fail_recips?: unknown }): string | undefined {
  const record = recordOf(hmail)
  if (!record?.connects?.refusals.length) return undefined
  // Haraka 3.0.x passes no fail_recips: a split-off deferral of recipients holds just them.
  const failed =
    params.fail_recips ??
    (/^Some recipients temp failed/.test(String(params.err)) ? hmail.todo.rcpt_to : undefined)
  const answered = refusalsAnswered(record.connects, recipientsOf(failed))
  if (!answered.length) return undefined
  for (const r of answered) r.answered = true
  const reason = `${answered.map(describeRefusal).join('; ')}; retrying over IPv4 at once`
  const detail = refusalDetail(answered[0].reply)
  for (const rcpt of hmail.todo.rcpt_to) hmail.extend_rcpt_with_dsn(rcpt, DSN.create(450, reason, 7, detail))
  return reason
}

export function explain_deferral(
  this: Plugin,
  next: Next,
  hmail: HMail,
  params: { err?: string; delay?: number; fail_recips?: unknown },
): void {
  try {
    const retry = this.happy_eyeballs?.settings.policy.enabled ? policyRetry(hmail, params) : undefined
    if (retry) {
      // A zero delay, not a DENYSOFT answer: every later deferred hook still runs and reads it.
      params.err = retry
      params.delay = 0
      logTo(hmail, 'info', retry)
      return next()
    }
    const reason = applyPendingDsn(hmail, String(params?.err ?? ''), false)
    if (reason && params) params.err = reason
  } catch (err) {
    this.logerror(`${LOG_PREFIX}could not set the deferral reason: ${describeError(err)}`)
  }
  next()
}

/** After a fallback: the delivery's log line says IPv6 was refused and IPv4 delivered. */
export function explain_delivery(this: Plugin, next: Next, hmail: HMail, params: unknown): void {
  try {
    const [host, ip] = Array.isArray(params) ? params : []
    // Haraka 3.0.x names the host by the address it delivered to: the plan knows its MX host.
    const record = recordOf(hmail)
    const exchange =
      typeof host === 'string' && net.isIP(host)
        ? record?.connects?.targets.find((t) => t.address === host)?.exchange
        : host
    const switched = switchedHosts(hmail.todo?.notes).filter(
      (s) => typeof exchange === 'string' && s.exchange.toLowerCase() === exchange.toLowerCase(),
    )
    if (switched.length && typeof ip === 'string' && net.isIPv4(ip)) {
      logTo(hmail, 'info', `${switched.map((s) => s.refusal).join('; ')}; delivered over IPv4 (${ip})`)
    }
  } catch (err) {
    this.logerror(`${LOG_PREFIX}could not explain the delivery: ${describeError(err)}`)
  }
  next()
}

export function explain_bounce(this: Plugin, next: Next, hmail: HMail, err: unknown): void {
  try {
    applyPendingDsn(hmail, String(err ?? ''), true)
  } catch (err) {
    this.logerror(`${LOG_PREFIX}could not set the bounce reason: ${describeError(err)}`)
  }
  next()
}

export function count_delivery(this: Plugin, next: Next, hmail: HMail, params: unknown[]): void {
  try {
    const record = recordOf(hmail)
    if (record) processMetrics.delivered(record, Array.isArray(params) ? params[1] : undefined)
  } catch (err) {
    this.logerror(`${LOG_PREFIX}could not count a delivery: ${describeError(err)}`)
  }
  next()
}

export function count_deferral(this: Plugin, next: Next, hmail: HMail, params: { err?: string }): void {
  try {
    const record = recordOf(hmail)
    if (record) processMetrics.failed(record, String(params?.err ?? ''), false)
  } catch (err) {
    this.logerror(`${LOG_PREFIX}could not count a deferral: ${describeError(err)}`)
  }
  next()
}

export function count_bounce(this: Plugin, next: Next, hmail: HMail, err: unknown): void {
  try {
    const record = recordOf(hmail)
    if (record) processMetrics.failed(record, String(err ?? ''), true)
  } catch (e) {
    this.logerror(`${LOG_PREFIX}could not count a bounce: ${describeError(e)}`)
  }
  next()
}
