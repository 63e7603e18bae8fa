'use strict'

// One soak pass and the whole run: fresh DNS, fault servers and Haraka (with the plugin or
// stock) on the layout, N messages injected, then every outcome (recorded as data), the
// sinks, the DSNs, the queue dir, fds, memory and the health cache checked against each other.

const path = require('node:path')

const {
  startDns,
  startSink,
  startSilent,
  startBlackHole,
  startHaraka,
  queuedUuid,
  submitTransport,
  scanQueue,
  followLog,
  pollUntil,
  sleep,
  freePort,
  waitForFreePort,
  fdSnapshot,
  memory,
  isAlive,
} = require('../../support')
const {
  zonelessLinkLocalConnect,
  assertZonelessLinkLocalStaysHere,
} = require('../../test/support/link-local')
const { SENDER, POOLS, DSN_SINK, HOLE6, FAULTS, ALL_HOSTS, makeLayout, zonesOf } = require('./layout')
const { PROBE_PLUGIN_NAME, PROBE_PLUGIN, readProbe } = require('./probe')

/** What stock Haraka's connects to the fe80:: addresses do on this Node and host. */
const LINK_LOCAL_CONNECT = zonelessLinkLocalConnect()

const DEFAULTS = {
  messages: 1000,
  domains: 50,
  seed: 42,
  compareStock: true,
  /** Parallel SMTP sessions injecting into Haraka. */
  concurrency: 10,
  /** How long after the last injection every outcome must be in. */
  outcomeTimeoutMs: 120000,
  /** The plugin's [cache] max_entries: small so a run presses the bound. */
  cacheMaxEntries: 50,
  /** How long to wait for the MX port to be free on every role address. */
  portWaitMs: 180000,
  /** Extra fds Haraka may hold after the run besides TCP (see the fd note in resultsMarkdown). */
  fdTolerance: 2,
  /** The plugin as the CLI runs it: this working tree. */
  pluginFrom: 'checkout',
}

// Haraka's outbound.ini for both variants. connect_timeout=5 bounds what a black hole or a
// silent greeting costs; the first retry is an hour away, so a deferred message stays in the
// queue dir for the whole run and is never tried twice.
const OUTBOUND = { connect_timeout: 5, temp_fail_intervals: '1h*3', local_mx_ok: true, enable_tls: false }
/** Starts what answers at every role address on `port`; close() stops all of it. */
async function startFaultServers(port) {
  const started = []
  const close = async () => {
    for (const s of started.splice(0).reverse()) await s.close()
  }
  try {
    const sinks = []
    for (const host of POOLS.healthy) {
      const s = await startSink({ host, port })
      started.push(s)
      sinks.push(s)
    }
    const dsnSink = await startSink({ host: DSN_SINK, port })
    started.push(dsnSink)
    const busy = []
    for (const host of POOLS.busy) {
      const s = await startSink({ host, port, greeting: '421 busy, try later' })
      started.push(s)
      busy.push(s)
    }
    const silent = []
    for (const host of POOLS.silent) {
      const s = await startSilent({ host, port })
      started.push(s)
      silent.push(s)
    }
    // python3 children: three IPv4 black holes and [::1], shared by every domain.
    const holes = []
    for (const host of [...POOLS.blackhole, HOLE6]) {
      const s = await startBlackHole({ host, port })
      started.push(s)
      holes.push(s)
    }
    return { sinks, dsnSink, busy, silent, holes, close }
  } catch (err) {
    await close()
    throw err
  }
}

const CRASH_RE = /uncaughtException|Unhandled/

/**
 * What only Haraka's log shows: crash markers, the plugin's internal errors (which must never
 * be logged), and Haraka's own failed connects by kind.
 */
function watchHarakaLog(haraka) {
  const state = {
    crashLines: [],
    internalErrors: 0,
    failedSockets: { EINVAL: 0, ECONNREFUSED: 0, timeout: 0 },
  }
  const follower = followLog(
    haraka,
    (line) => {
      if (CRASH_RE.test(line)) state.crashLines.push(line)
      if (line.includes('happy-eyeballs: internal error')) state.internalErrors++
      if (line.includes('Failed to get socket')) {
        if (/EINVAL/.test(line)) state.failedSockets.EINVAL++
        else if (/ECONNREFUSED/.test(line)) state.failedSockets.ECONNREFUSED++
        else if (/timed out/.test(line)) state.failedSockets.timeout++
      }
    },
    { from: 0, everyMs: 100 },
  )
  return { state, poll: follower.poll, stop: follower.stop }
}

/** The recorded outcomes of a Haraka, by outbound item uuid, in the order they happened. */
function outcomesByUuid(haraka) {
  const byUuid = new Map()
  for (const o of haraka.outcomes()) {
    const list = byUuid.get(o.uuid) || []
    list.push({ kind: o.kind, at: o.at, ip: o.haraka.ip, err: o.haraka.err })
    byUuid.set(o.uuid, list)
  }
  return byUuid
}

/** Injects every message with `concurrency` SMTP sessions; returns one record per message. */
async function inject({ port, layout, messages, concurrency, runTag }) {
  const transport = submitTransport(port, { pool: concurrency })
  const records = []
  let next = 0
  const worker = async () => {
    while (next < messages) {
      const i = next++
      const dom = layout[i % layout.length]
      const id = `${runTag}-${i}`
      const to = `u${i}@${dom.name}`
      const rec = { i, id, domain: dom.name, tags: dom.tags, to, t0: Date.now() }
      records.push(rec)
      try {
        const info = await transport.sendMail({
          envelope: { from: SENDER, to: [to] },
          from: SENDER,
          to,
          subject: `soak ${id}`,
          text: `soak message ${id}\n`,
          messageId: `<${id}@soak.test>`,
          headers: { 'X-Soak-Id': id },
        })
        rec.queued = Date.now()
        // Haraka's queue reply names the transaction; its outbound item is "<uuid>.1".
        const uuid = queuedUuid(info)
        if (uuid) rec.uuid = `${uuid}.1`
        else rec.injectError = `no queue id in ${info.response}`
      } catch (err) {
        rec.injectError = err.message
      }
    }
  }
  try {
    await Promise.all(Array.from({ length: concurrency }, worker))
  } finally {
    transport.close()
  }
  return records.sort((a, b) => a.i - b.i)
}

const X_SOAK_ID_RE = /^X-Soak-Id:\s*(\S+)/im

function percentile(sorted, p) {
  if (!sorted.length) return null
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]
}

function stats(values) {
  const sorted = [...values].sort((a, b) => a - b)
  return {
    n: sorted.length,
    median: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    max: sorted.length ? sorted[sorted.length - 1] : null,
  }
}

/**
 * One pass: fresh DNS, fault servers and Haraka (with the plugin, or stock), N messages, then
 * every measurement. Everything it started is stopped before it returns.
 */
async function runVariant(variant, layout, opts) {
  const started = Date.now()
  const port = opts.port
  const runTag = `s${opts.seed}-${variant}`
  const cleanup = []
  const result = { variant, port }
  try {
    await waitForFreePort(ALL_HOSTS, port, opts.portWaitMs, (busy) =>
      console.error(
        `soak: port ${port} is in use on ${busy.join(', ')}; waiting up to ${opts.portWaitMs / 1000} s`,
      ),
    )
    const dns = await startDns(zonesOf(layout))
    cleanup.push(() => dns.close())
    const servers = await startFaultServers(port)
    cleanup.push(() => servers.close())

    const files = {}
    const plugins = []
    if (variant === 'plugin') {
      plugins.push('happy-eyeballs', PROBE_PLUGIN_NAME)
      files['happy_eyeballs.ini'] = [
        '[main]',
        `port=${port}`,
        '[filter]',
        'allow[]=127.0.0.0/8',
        'allow[]=::1/128',
        '[dns]',
        'timeout_ms=500',
        // The race gives up after as long as stock waits on one dead address.
        '[race]',
        `deadline_ms=${OUTBOUND.connect_timeout * 1000}`,
        '[cache]',
        `max_entries=${opts.cacheMaxEntries}`,
        '',
      ].join('\n')
    }
    const haraka = await startHaraka({
      version: '3.3.4',
      dnsPort: dns.port,
      plugins,
      outbound: OUTBOUND,
      files,
      pluginFiles: variant === 'plugin' ? { [PROBE_PLUGIN_NAME]: PROBE_PLUGIN } : {},
      pluginFrom: opts.pluginFrom,
    })
    cleanup.push(() => haraka.stop())
    const log = watchHarakaLog(haraka)
    cleanup.push(() => log.stop())

    // Baseline after start-up has settled (queue loaded, plugins registered).
    await sleep(500)
    const fdBefore = fdSnapshot(haraka.pid)

    const injectStart = Date.now()
    const records = await inject({
      port: haraka.port,
      layout,
      messages: opts.messages,
      concurrency: opts.concurrency,
      runTag,
    })
    const injectMs = Date.now() - injectStart
    const phases = { startMs: injectStart - started, injectMs }
    let mark = Date.now()
    const phase = (name) => {
      phases[name] = Date.now() - mark
      mark = Date.now()
    }
    const injected = records.filter((r) => r.uuid)

    // Every injected message has an outcome, Haraka died, or the bound passed.
    let outcomes = new Map()
    await pollUntil(() => {
      outcomes = outcomesByUuid(haraka)
      return haraka.exitInfo() || injected.every((r) => outcomes.has(r.uuid))
    }, opts.outcomeTimeoutMs)
    outcomes = outcomesByUuid(haraka)
    phase('outcomesMs')

    const counts = { delivered: 0, deferred: 0, bounced: 0, missing: 0, repeated: 0 }
    const byKind = { delivered: [], deferred: [], bounced: [] }
    for (const r of injected) {
      const list = outcomes.get(r.uuid)
      if (!list) {
        counts.missing++
        continue
      }
      if (list.length > 1) counts.repeated++
      r.outcome = list[0]
      r.ms = r.outcome.at - r.t0
      counts[r.outcome.kind]++
      byKind[r.outcome.kind].push(r)
    }
    const injectedUuids = new Set(injected.map((r) => r.uuid))
    const otherOutcomes = [...outcomes.entries()].filter(([u]) => !injectedUuids.has(u))

    // DSNs for the bounces reach the sender's sink; then the queue holds only deferrals.
    await pollUntil(() => servers.dsnSink.messages.length >= counts.bounced, 30000)
    phase('dsnMs')
    const deferredUuids = new Set(byKind.deferred.map((r) => r.uuid))
    let queue = null
    await pollUntil(async () => {
      queue = await scanQueue(path.join(haraka.dir, 'queue'))
      return !queue.tmpFiles.length && queue.files.length === deferredUuids.size
    }, 10000)
    phase('queueMs')

    // Sinks: every delivered message exactly once, at the address Haraka logged.
    const atSinks = new Map()
    let foreign = 0
    for (const s of servers.sinks) {
      for (const msg of s.messages) {
        const m = X_SOAK_ID_RE.exec(msg.data)
        if (!m || !m[1].startsWith(`${runTag}-`)) {
          foreign++
          continue
        }
        const seen = atSinks.get(m[1]) || []
        seen.push(s.host)
        atSinks.set(m[1], seen)
      }
    }
    const deliveredIds = new Set(byKind.delivered.map((r) => r.id))
    const sinkReceived = [...atSinks.values()].reduce((n, l) => n + l.length, 0)
    const sinkDuplicates = [...atSinks.values()].filter((l) => l.length > 1).length
    const notLogged = [...atSinks.keys()].filter((id) => !deliveredIds.has(id)).length
    const lost = byKind.delivered.filter((r) => !atSinks.has(r.id)).length
    const wrongIp = byKind.delivered.filter(
      (r) => atSinks.has(r.id) && atSinks.get(r.id)[0] !== r.outcome.ip,
    ).length

    const bouncedIds = new Set(byKind.bounced.map((r) => r.id))
    const dsnIds = servers.dsnSink.messages.map((m) => (X_SOAK_ID_RE.exec(m.data) || [])[1])
    const dsnMatched = dsnIds.filter((id) => bouncedIds.has(id)).length

    const queueUuids = queue.files.map((f) => f.uuid)
    const queueExtra = queueUuids.filter((u) => !deferredUuids.has(u)).length
    const queueMissing = [...deferredUuids].filter((u) => !queueUuids.includes(u)).length

    // Open fds: give the last sockets (timed-out connects, QUITs) a moment to close.
    let fdAfter = null
    await pollUntil(() => {
      if (haraka.exitInfo()) return true
      fdAfter = fdSnapshot(haraka.pid)
      return (
        fdAfter.kinds['tcp-open'] <= fdBefore.kinds['tcp-open'] &&
        fdAfter.total <= fdBefore.total + opts.fdTolerance
      )
    }, 15000)
    phase('fdSettleMs')

    const alive = !haraka.exitInfo() && isAlive(haraka.pid)
    const mem = alive ? memory(haraka.pid) : null
    const probe = variant === 'plugin' ? await readProbe(haraka.dir) : null
    log.poll()

    result.injected = injected.length
    result.injectErrors = records.filter((r) => r.injectError).map((r) => r.injectError)
    result.injectMs = injectMs
    result.phases = phases
    result.counts = counts
    result.otherOutcomes = otherOutcomes.map(([u, l]) => ({ uuid: u, kinds: l.map((o) => o.kind) }))
    result.sinks = { received: sinkReceived, duplicates: sinkDuplicates, notLogged, lost, wrongIp, foreign }
    result.dsn = { received: servers.dsnSink.messages.length, matched: dsnMatched }
    result.queue = {
      files: queue.files.length,
      extra: queueExtra,
      missing: queueMissing,
      errorFiles: queue.errorFiles.length,
      tmpFiles: queue.tmpFiles.length,
    }
    result.haraka = {
      alive,
      exitInfo: haraka.exitInfo(),
      crashLines: log.state.crashLines,
      internalErrors: log.state.internalErrors,
      failedSockets: log.state.failedSockets,
    }
    result.fds = { before: fdBefore, after: fdAfter, tolerance: opts.fdTolerance }
    result.memory = mem
    result.cache = variant === 'plugin' ? { bound: opts.cacheMaxEntries, ...(probe || {}) } : null
    result.faultServers = {
      busyConnections: servers.busy.reduce((n, s) => n + s.connections, 0),
      silentConnections: servers.silent.reduce((n, s) => n + s.connections, 0),
    }
    result.records = records.map((r) => ({
      i: r.i,
      id: r.id,
      domain: r.domain,
      tags: r.tags,
      uuid: r.uuid,
      injectError: r.injectError,
      kind: r.outcome ? r.outcome.kind : null,
      ms: r.outcome ? r.ms : null,
      err: r.outcome ? r.outcome.err : undefined,
      ip: r.outcome ? r.outcome.ip : undefined,
    }))
  } finally {
    const stopStart = Date.now()
    for (const stop of cleanup.reverse()) await stop()
    if (result.phases) result.phases.stopMs = Date.now() - stopStart
  }
  result.wallMs = Date.now() - started
  return result
}

/** Timing stats by outcome and by domain fault tag, from a variant's records. */
function timing(result) {
  const done = result.records.filter((r) => r.kind)
  const out = { all: stats(done.map((r) => r.ms)), byKind: {}, byTag: {} }
  for (const kind of ['delivered', 'deferred', 'bounced'])
    out.byKind[kind] = stats(done.filter((r) => r.kind === kind).map((r) => r.ms))
  for (const tag of ['clean', ...FAULTS])
    out.byTag[tag] = stats(done.filter((r) => r.tags.includes(tag)).map((r) => r.ms))
  return out
}

/** True when a variant's accounting holds in every cross-check. */
function consistent(v) {
  return (
    v.counts.missing === 0 &&
    v.counts.repeated === 0 &&
    v.injected === v.counts.delivered + v.counts.deferred + v.counts.bounced &&
    v.sinks.received === v.counts.delivered &&
    v.sinks.duplicates === 0 &&
    v.sinks.lost === 0 &&
    v.sinks.notLogged === 0 &&
    v.sinks.wrongIp === 0 &&
    v.dsn.matched === v.counts.bounced &&
    v.dsn.received === v.counts.bounced &&
    v.queue.files === v.counts.deferred &&
    v.queue.extra === 0 &&
    v.queue.missing === 0 &&
    v.queue.errorFiles === 0
  )
}

/**
 * Runs the soak: the plugin variant, then (compareStock) stock Haraka on the same layout.
 * @param {{messages?: number, domains?: number, seed?: number, compareStock?: boolean,
 *   port?: number, concurrency?: number, outcomeTimeoutMs?: number, cacheMaxEntries?: number,
 *   fdTolerance?: number, pluginFrom?: 'package'|'checkout'}} [options]  pluginFrom: see startHaraka
 * @returns {Promise<object>} the report (see bench/soak-results.md for what each part means)
 */
async function runSoak(options = {}) {
  const opts = { ...DEFAULTS, ...options }
  if (opts.domains < 1 || opts.messages < 1) throw new Error('runSoak: messages and domains must be >= 1')
  const started = Date.now()
  const layout = makeLayout(opts)
  // Stock Haraka sends to port 25 of an MX and cannot be told otherwise; when it is compared,
  // the plugin uses port 25 too, so both meet the very same servers.
  const pluginPort = opts.port || (opts.compareStock ? 25 : await freePort())
  const report = {
    startedAt: new Date(started).toISOString(),
    options: {
      messages: opts.messages,
      domains: opts.domains,
      seed: opts.seed,
      compareStock: opts.compareStock,
      concurrency: opts.concurrency,
      cacheMaxEntries: opts.cacheMaxEntries,
    },
    outbound: OUTBOUND,
    layout: layout.map((d) => ({
      name: d.name,
      dns: d.dns,
      tags: d.tags,
      hosts: d.hosts.map((h) => ({
        name: h.name,
        preference: h.preference,
        aaaa: h.aaaa.map((x) => `${x.address} ${x.role}`),
        a: h.a.map((x) => `${x.address} ${x.role}`),
      })),
    })),
    variants: {},
  }
  report.variants.plugin = await runVariant('plugin', layout, { ...opts, port: pluginPort })
  if (opts.compareStock) {
    assertZonelessLinkLocalStaysHere(LINK_LOCAL_CONNECT)
    report.variants.stock = await runVariant('stock', layout, { ...opts, port: 25 })
  }
  for (const v of Object.values(report.variants)) {
    v.timing = timing(v)
    v.consistent = consistent(v)
  }
  report.wallMs = Date.now() - started
  return report
}

module.exports = { runSoak, DEFAULTS, OUTBOUND, LINK_LOCAL_CONNECT }
