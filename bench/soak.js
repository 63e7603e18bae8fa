'use strict'

// Soak run: N messages over D domains, each domain with a seeded mix of DNS and connection
// faults, through a real Haraka 3.3.4 with the plugin (and, to compare, through stock Haraka
// 3.3.4 on the same layout). Every message must end delivered, deferred or bounced, and the
// sinks, the DSNs and Haraka's queue dir must agree with what Haraka logged. Also measured:
// crashes, Haraka's open fds before/after, its peak RSS, the health cache against its bound,
// and the time from injection to outcome of every message.
//
// Everything runs on loopback: MX addresses are 127.77.x.y (one role per address) and ::1,
// the DNS is the haraka-test-fixtures server on 127.0.0.1, and fe80:: addresses without a
// zone fail before any packet is sent.

const fsp = require('node:fs/promises')
const os = require('node:os')
const path = require('node:path')
const { parseArgs } = require('node:util')

// The DNS fixture alone: the package index loads Haraka modules that print to stdout.
const fixtureDns = require('haraka-test-fixtures/lib/dns')
const nodemailer = require('nodemailer')

const harness = require('../test/e2e/harness')
const faults = require('./faults')
const { zonelessLinkLocalConnect, assertZonelessLinkLocalStaysHere } = require('../test/support/link-local')

const RESULTS_FILE = path.join(__dirname, 'soak-results.md')
/** What stock Haraka's connects to the fe80:: addresses do on this Node and host. */
const LINK_LOCAL_CONNECT = zonelessLinkLocalConnect()

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

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
}

// Haraka's outbound.ini for both variants. connect_timeout=5 bounds what a black hole or a
// silent greeting costs; the first retry is an hour away, so a deferred message stays in the
// queue dir for the whole run and is never tried twice.
const OUTBOUND = { connect_timeout: 5, temp_fail_intervals: '1h*3', local_mx_ok: true, enable_tls: false }

const LOG_INI = '[main]\nlevel=info\ntimestamps=true\nformat=default\n'

// Bounces go to the sender, soak@dsn.soak.test, whose MX is a dedicated healthy sink: each
// bounce then yields exactly one DSN there (a second cross-check of the bounce count), and no
// DSN can itself bounce or defer. A null sender would make Haraka drop bounces silently
// ("double bounce"), leaving nothing to check them against.
const SENDER = 'soak@dsn.soak.test'
const DSN_DOMAIN = 'dsn.soak.test'

const NET = '127.77'
const POOLS = {
  healthy: Array.from({ length: 6 }, (_, i) => `${NET}.0.${10 + i}`),
  refused: Array.from({ length: 8 }, (_, i) => `${NET}.1.${1 + i}`),
  blackhole: [`${NET}.2.1`, `${NET}.2.2`, `${NET}.2.3`],
  busy: [`${NET}.3.1`, `${NET}.3.2`],
  silent: [`${NET}.4.1`, `${NET}.4.2`],
}
const DSN_SINK = `${NET}.0.250`
const HOLE6 = '::1'

/** Fault kinds; the first domains get one each, so a small run still covers them all. */
const FAULTS = [
  'nxdomain',
  'servfail',
  'slow-dns',
  'v6-blackhole',
  'v6-linklocal',
  'v4-refused',
  'v4-blackhole',
  'v4-silent',
  'v4-421',
]
const ROLE_TAG = {
  refused: 'v4-refused',
  blackhole: 'v4-blackhole',
  silent: 'v4-silent',
  busy: 'v4-421',
}

function weighted(rnd, table) {
  const total = table.reduce((s, [, w]) => s + w, 0)
  let x = rnd() * total
  for (const [value, w] of table) {
    x -= w
    if (x < 0) return value
  }
  return table[table.length - 1][0]
}

/**
 * The fault layout: per domain its DNS behaviour and MX hosts, each host with AAAA and A
 * addresses whose roles say what answers there. Pure function of (domains, seed).
 */
function makeLayout({ domains, seed }) {
  const rnd = faults.prng(seed)
  const pickFrom = (list) => list[Math.floor(rnd() * list.length)]
  const linkLocal = () =>
    `fe80::${Math.floor(rnd() * 0xffff).toString(16)}:${Math.floor(rnd() * 0xffff).toString(16)}`
  const list = []
  for (let d = 0; d < domains; d++) {
    const forced = d < FAULTS.length ? FAULTS[d] : null
    const name = `d${d}.soak.test`
    const dom = { name, dns: 'ok', hosts: [], tags: new Set() }
    // A domain forced to carry an address fault must resolve, or the fault is never met.
    const dnsTable = [
      ['nxdomain', forced ? 0 : 0.05],
      ['servfail', forced ? 0 : 0.05],
      ['slow', 0.15],
      ['ok', 0.75],
    ]
    dom.dns =
      forced === 'nxdomain' || forced === 'servfail' || forced === 'slow-dns'
        ? forced.replace('-dns', '')
        : weighted(rnd, dnsTable)
    if (dom.dns === 'nxdomain' || dom.dns === 'servfail') {
      dom.tags.add(dom.dns)
      list.push(dom)
      continue
    }
    if (dom.dns === 'slow') dom.tags.add('slow-dns')
    const hostCount = weighted(rnd, [
      [1, 0.6],
      [2, 0.4],
    ])
    for (let h = 0; h < hostCount; h++) {
      const host = { name: `mx${h + 1}.${name}`, preference: 10 * (h + 1), aaaa: [], a: [] }
      const v6 = weighted(rnd, [
        ['none', 0.4],
        ['blackhole', 0.35],
        ['linklocal', 0.15],
        ['both', 0.1],
      ])
      if (v6 === 'blackhole' || v6 === 'both') host.aaaa.push({ address: HOLE6, role: 'blackhole' })
      if (v6 === 'linklocal' || v6 === 'both') host.aaaa.push({ address: linkLocal(), role: 'linklocal' })
      const aCount = weighted(rnd, [
        [1, 0.65],
        [2, 0.35],
      ])
      for (let i = 0; i < aCount; i++) {
        const role = weighted(rnd, [
          ['healthy', 0.62],
          ['refused', 0.12],
          ['blackhole', 0.1],
          ['silent', 0.1],
          ['busy', 0.06],
        ])
        const address = pickFrom(POOLS[role])
        if (!host.a.some((x) => x.address === address)) host.a.push({ address, role })
      }
      dom.hosts.push(host)
    }
    // The forced fault goes on the first host so that it is met, not hidden behind a backup.
    const first = dom.hosts[0]
    if (forced === 'v6-blackhole' && !first.aaaa.some((x) => x.role === 'blackhole'))
      first.aaaa.unshift({ address: HOLE6, role: 'blackhole' })
    if (forced === 'v6-linklocal' && !first.aaaa.some((x) => x.role === 'linklocal'))
      first.aaaa.push({ address: linkLocal(), role: 'linklocal' })
    const forcedRole = Object.keys(ROLE_TAG).find((r) => ROLE_TAG[r] === forced)
    if (forcedRole) {
      first.a = first.a.filter((x) => x.role !== forcedRole)
      first.a.unshift({ address: pickFrom(POOLS[forcedRole]), role: forcedRole })
    }

    for (const host of dom.hosts) {
      for (const x of host.aaaa) dom.tags.add(x.role === 'blackhole' ? 'v6-blackhole' : 'v6-linklocal')
      for (const x of host.a) if (ROLE_TAG[x.role]) dom.tags.add(ROLE_TAG[x.role])
    }
    if (!dom.tags.size) dom.tags.add('clean')
    list.push(dom)
  }
  return list.map((d) => ({ ...d, tags: [...d.tags].sort() }))
}

/** The DNS fixture's zones for a layout, plus the sender's domain. */
function zonesOf(layout) {
  const zones = {
    [DSN_DOMAIN]: { mx: [{ preference: 10, exchange: `mx.${DSN_DOMAIN}` }] },
    [`mx.${DSN_DOMAIN}`]: { a: [DSN_SINK] },
  }
  for (const dom of layout) {
    if (dom.dns === 'nxdomain') continue // no zone: the fixture answers NXDOMAIN
    if (dom.dns === 'servfail') {
      zones[dom.name] = { rcode: 'SERVFAIL' }
      continue
    }
    const delay = dom.dns === 'slow' ? { delayMs: 200 } : {}
    zones[dom.name] = { mx: dom.hosts.map((h) => ({ preference: h.preference, exchange: h.name })), ...delay }
    for (const h of dom.hosts) {
      zones[h.name] = { aaaa: h.aaaa.map((x) => x.address), a: h.a.map((x) => x.address), ...delay }
    }
  }
  return zones
}

/** Every address the layout may use as an MX, whatever its role. */
const ALL_HOSTS = [...Object.values(POOLS).flat(), DSN_SINK, HOLE6]

/**
 * Waits (bounded) until `port` is free on every role address: port 25 on [::1] or 127.0.0.1 may
 * be held for a while by another test run on the same machine.
 */
async function waitForPorts(port, timeoutMs) {
  const end = Date.now() + timeoutMs
  let busy = await faults.busyHosts(ALL_HOSTS, port)
  if (busy.length)
    console.error(`soak: port ${port} is in use on ${busy.join(', ')}; waiting up to ${timeoutMs / 1000} s`)
  while (busy.length && Date.now() < end) {
    await sleep(1000)
    busy = await faults.busyHosts(ALL_HOSTS, port)
  }
  if (busy.length) throw new Error(`soak: port ${port} is still in use on ${busy.join(', ')}`)
}

/** Starts what answers at every role address on `port`; close() stops all of it. */
async function startFaultServers(port) {
  const started = []
  const close = async () => {
    for (const s of started.splice(0).reverse()) await s.close()
  }
  try {
    const sinks = []
    for (const host of POOLS.healthy) {
      const s = await harness.startSink({ host, port })
      started.push(s)
      sinks.push(s)
    }
    const dsnSink = await harness.startSink({ host: DSN_SINK, port })
    started.push(dsnSink)
    const busy = []
    for (const host of POOLS.busy) {
      const s = await harness.startSink({ host, port, greeting: '421 busy, try later' })
      started.push(s)
      busy.push(s)
    }
    const silent = []
    for (const host of POOLS.silent) {
      const s = await faults.startSilent({ host, port })
      started.push(s)
      silent.push(s)
    }
    // python3 children: three IPv4 black holes and [::1], shared by every domain.
    const holes = []
    for (const host of [...POOLS.blackhole, HOLE6]) {
      const s = await harness.startBlackHole({ host, port })
      started.push(s)
      holes.push(s)
    }
    return { sinks, dsnSink, busy, silent, holes, close }
  } catch (err) {
    await close()
    throw err
  }
}

const LINE_RE = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z) \[[A-Z]+\] \[([0-9A-F-]+(?:\.\d+)*)\] \[outbound\]/
const OUTCOME_LINE_RE = new RegExp(harness.OUTCOME_RE.source)
const CRASH_RE = /uncaughtException|Unhandled/

/**
 * Follows Haraka's log: outcome lines by outbound uuid with Haraka's own timestamp, probe
 * lines, crash markers, and happy-eyeballs internal errors.
 */
function followLog(haraka) {
  const state = {
    outcomes: new Map(),
    probe: null,
    crashLines: [],
    internalErrors: 0,
    failedSockets: { EINVAL: 0, ECONNREFUSED: 0, timeout: 0 },
  }
  let offset = 0
  const poll = () => {
    const text = haraka.log()
    const end = text.lastIndexOf('\n') + 1
    if (end <= offset) return
    const chunk = text.slice(offset, end)
    offset = end
    for (const line of chunk.split('\n')) {
      if (!line) continue
      if (CRASH_RE.test(line)) state.crashLines.push(line)
      if (line.includes('happy-eyeballs: internal error')) state.internalErrors++
      if (line.includes('Failed to get socket')) {
        if (/EINVAL/.test(line)) state.failedSockets.EINVAL++
        else if (/ECONNREFUSED/.test(line)) state.failedSockets.ECONNREFUSED++
        else if (/timed out/.test(line)) state.failedSockets.timeout++
      }
      const p = faults.PROBE_LINE_RE.exec(line)
      if (p) state.probe = { size: +p[1], peak: +p[2], maxEntries: +p[3], distinct: +p[4] }
      const head = LINE_RE.exec(line)
      if (!head) continue
      const m = OUTCOME_LINE_RE.exec(line)
      if (!m) continue
      const at = Date.parse(head[1])
      let outcome
      if (m[1]) outcome = { kind: 'delivered', ip: m[3], at }
      else if (m[5]) outcome = { kind: 'deferred', err: m[7], at }
      else outcome = { kind: 'bounced', err: m[8], at }
      const list = state.outcomes.get(head[2]) || []
      list.push(outcome)
      state.outcomes.set(head[2], list)
    }
  }
  const timer = setInterval(poll, 100)
  return {
    state,
    poll,
    stop() {
      clearInterval(timer)
      poll()
    },
  }
}

/** Polls check() every 100 ms until it is truthy or timeoutMs passes; returns its last value. */
async function pollUntil(check, timeoutMs) {
  const end = Date.now() + timeoutMs
  let v = await check()
  while (!v && Date.now() < end) {
    await sleep(100)
    v = await check()
  }
  return v
}

/** Injects every message with `concurrency` SMTP sessions; returns one record per message. */
async function inject({ port, layout, messages, concurrency, runTag }) {
  const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port,
    secure: false,
    ignoreTLS: true,
    name: 'client.test',
    pool: true,
    maxConnections: concurrency,
    maxMessages: Infinity,
    connectionTimeout: 10000,
    greetingTimeout: 10000,
    socketTimeout: 30000,
  })
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
        const uuid = harness.queuedUuid(info)
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
    await waitForPorts(port, opts.portWaitMs)
    const dns = await fixtureDns.start(zonesOf(layout))
    cleanup.push(() => dns.close())
    const servers = await startFaultServers(port)
    cleanup.push(() => servers.close())

    const files = { 'log.ini': LOG_INI }
    const plugins = []
    if (variant === 'plugin') {
      plugins.push('happy-eyeballs', 'soak_probe')
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
    const haraka = await harness.startHaraka({
      version: '3.3.4',
      dnsPort: dns.port,
      plugins,
      outbound: OUTBOUND,
      files,
      pluginFiles: variant === 'plugin' ? { soak_probe: faults.PROBE_PLUGIN } : {},
    })
    cleanup.push(() => haraka.stop())
    const log = followLog(haraka)
    cleanup.push(() => log.stop())

    // Baseline after start-up has settled (queue loaded, plugins registered).
    await sleep(500)
    const fdBefore = faults.fdSnapshot(haraka.pid)

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
    await pollUntil(() => {
      log.poll()
      return haraka.exitInfo() || injected.every((r) => log.state.outcomes.has(r.uuid))
    }, opts.outcomeTimeoutMs)
    log.poll()
    phase('outcomesMs')

    const counts = { delivered: 0, deferred: 0, bounced: 0, missing: 0, repeated: 0 }
    const byKind = { delivered: [], deferred: [], bounced: [] }
    for (const r of injected) {
      const list = log.state.outcomes.get(r.uuid)
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
    const otherOutcomes = [...log.state.outcomes.entries()].filter(([u]) => !injectedUuids.has(u))

    // DSNs for the bounces reach the sender's sink; then the queue holds only deferrals.
    await pollUntil(() => servers.dsnSink.messages.length >= counts.bounced, 30000)
    phase('dsnMs')
    const deferredUuids = new Set(byKind.deferred.map((r) => r.uuid))
    let queue = null
    await pollUntil(async () => {
      queue = await faults.scanQueue(path.join(haraka.dir, 'queue'))
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
      fdAfter = faults.fdSnapshot(haraka.pid)
      return (
        fdAfter.kinds['tcp-open'] <= fdBefore.kinds['tcp-open'] &&
        fdAfter.total <= fdBefore.total + opts.fdTolerance
      )
    }, 15000)
    phase('fdSettleMs')

    const alive = !haraka.exitInfo() && faults.isAlive(haraka.pid)
    const mem = alive ? faults.memory(haraka.pid) : null
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
    result.cache = variant === 'plugin' ? { bound: opts.cacheMaxEntries, ...(log.state.probe || {}) } : null
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
 *   fdTolerance?: number}} [options]
 * @returns {Promise<object>} the report (see bench/soak-results.md for what each part means)
 */
async function runSoak(options = {}) {
  const opts = { ...DEFAULTS, ...options }
  if (opts.domains < 1 || opts.messages < 1) throw new Error('runSoak: messages and domains must be >= 1')
  const started = Date.now()
  const layout = makeLayout(opts)
  // Stock Haraka sends to port 25 of an MX and cannot be told otherwise; when it is compared,
  // the plugin uses port 25 too, so both meet the very same servers.
  const pluginPort = opts.port || (opts.compareStock ? 25 : await harness.freePort())
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

// ---------------------------------------------------------------------------------------------
// Report text

const fmtMs = (v) => (v === null || v === undefined ? '–' : `${Math.round(v)}`)

function mdTable(head, rows) {
  const line = (cells) => `| ${cells.join(' | ')} |`
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n')
}

function tagCounts(report) {
  const counts = {}
  for (const tag of ['clean', ...FAULTS])
    counts[tag] = report.layout.filter((d) => d.tags.includes(tag)).length
  return counts
}

function accountingTable(report) {
  const names = Object.keys(report.variants)
  const row = (label, f) => [label, ...names.map((n) => String(f(report.variants[n])))]
  return mdTable(
    ['', ...names],
    [
      row('injected (queued by Haraka)', (v) => v.injected),
      row('injection errors', (v) => v.injectErrors.length),
      row('delivered', (v) => v.counts.delivered),
      row('deferred', (v) => v.counts.deferred),
      row('bounced', (v) => v.counts.bounced),
      row('no outcome in time', (v) => v.counts.missing),
      row('more than one outcome', (v) => v.counts.repeated),
      row('received at the sinks', (v) => v.sinks.received),
      row('… twice / not logged / lost / other IP', (v) =>
        [v.sinks.duplicates, v.sinks.notLogged, v.sinks.lost, v.sinks.wrongIp].join(' / '),
      ),
      row('DSNs at the sender (matching a bounce)', (v) => `${v.dsn.received} (${v.dsn.matched})`),
      row(
        'queue files (extra / missing / error.)',
        (v) => `${v.queue.files} (${v.queue.extra} / ${v.queue.missing} / ${v.queue.errorFiles})`,
      ),
      row('all cross-checks agree', (v) => (v.consistent ? 'yes' : 'NO')),
      row(
        'Haraka alive, crash lines',
        (v) => `${v.haraka.alive ? 'yes' : 'NO'}, ${v.haraka.crashLines.length}`,
      ),
      row('plugin internal errors logged', (v) => (v.variant === 'plugin' ? v.haraka.internalErrors : '–')),
      row("Haraka's own failed connects: EINVAL / refused / timeout", (v) =>
        [
          v.haraka.failedSockets.EINVAL,
          v.haraka.failedSockets.ECONNREFUSED,
          v.haraka.failedSockets.timeout,
        ].join(' / '),
      ),
      row(
        'connections to 421 / silent servers',
        (v) => `${v.faultServers.busyConnections} / ${v.faultServers.silentConnections}`,
      ),
      row('fds before → after (TCP open before → after)', (v) =>
        v.fds.after
          ? `${v.fds.before.total} → ${v.fds.after.total} (${v.fds.before.kinds['tcp-open']} → ${v.fds.after.kinds['tcp-open']})`
          : 'n/a',
      ),
      row('UDP sockets before → after', (v) =>
        v.fds.after ? `${v.fds.before.kinds.udp} → ${v.fds.after.kinds.udp}` : 'n/a',
      ),
      row('peak RSS (VmHWM), MiB', (v) => (v.memory ? (v.memory.peakKib / 1024).toFixed(1) : 'n/a')),
      row('health cache: peak / final / bound (distinct keys offered)', (v) =>
        v.cache && v.cache.maxEntries !== undefined
          ? `${v.cache.peak} / ${v.cache.size} / ${v.cache.maxEntries} (${v.cache.distinct})`
          : '–',
      ),
      row('pass wall time, s', (v) => (v.wallMs / 1000).toFixed(1)),
      row('… start / inject / outcomes / DSNs / queue / fds / stop, s', (v) =>
        ['startMs', 'injectMs', 'outcomesMs', 'dsnMs', 'queueMs', 'fdSettleMs', 'stopMs']
          .map((k) => (v.phases[k] / 1000).toFixed(1))
          .join(' / '),
      ),
    ],
  )
}

function timingTable(report) {
  const names = Object.keys(report.variants)
  const head = ['messages of domains with', 'n']
  for (const n of names) head.push(`${n} median`, `${n} p95`)
  const rows = []
  const add = (label, get) => {
    const first = get(report.variants[names[0]])
    const row = [label, String(first.n)]
    for (const n of names) {
      const s = get(report.variants[n])
      row.push(fmtMs(s.median), fmtMs(s.p95))
    }
    rows.push(row)
  }
  add('all', (v) => v.timing.all)
  for (const tag of ['clean', ...FAULTS]) add(tag, (v) => v.timing.byTag[tag])
  return mdTable(head, rows)
}

function byKindTable(report) {
  const names = Object.keys(report.variants)
  const head = ['outcome']
  for (const n of names) head.push(`${n} n`, `${n} median`, `${n} p95`)
  const rows = ['delivered', 'deferred', 'bounced'].map((kind) => {
    const row = [kind]
    for (const n of names) {
      const s = report.variants[n].timing.byKind[kind]
      row.push(String(s.n), fmtMs(s.median), fmtMs(s.p95))
    }
    return row
  })
  return mdTable(head, rows)
}

/** Outcome of each message under both variants, counted by pair (plugin → stock). */
function transitions(report) {
  const { plugin, stock } = report.variants
  if (!stock) return null
  const pairs = {}
  for (let i = 0; i < plugin.records.length; i++) {
    const key = `${plugin.records[i].kind || 'none'} → ${(stock.records[i] && stock.records[i].kind) || 'none'}`
    pairs[key] = (pairs[key] || 0) + 1
  }
  return mdTable(
    ['plugin → stock', 'messages'],
    Object.entries(pairs)
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => [k, String(n)]),
  )
}

const ROLE_OF = new Map([
  ...Object.entries(POOLS).flatMap(([role, list]) => list.map((a) => [a, role])),
  [DSN_SINK, 'healthy'],
])

/** A deferral or bounce text with the per-domain details replaced, so that equal reasons count together. */
function reasonKey(err) {
  return String(err || '')
    .replace(/\bmx\d+\.d\d+\.soak\.test\b/g, '<mx>')
    .replace(/\bd\d+\.soak\.test\b/g, '<domain>')
    .replace(/\b127\.77\.\d+\.\d+\b/g, (a) => `<${ROLE_OF.get(a) || 'ip'}>`)
    .replace(/\bfe80::[0-9a-f:]+/g, '<fe80>')
    .replace(/(?<![0-9a-f:])::1\b/g, '<blackhole6>')
    .replace(/no answer in \d+ ms/g, 'no answer in … ms')
    .slice(0, 160)
}

function reasonsTable(report) {
  const rows = []
  for (const [name, v] of Object.entries(report.variants)) {
    const counts = new Map()
    for (const r of v.records) {
      if (r.kind !== 'deferred' && r.kind !== 'bounced') continue
      const key = `${r.kind}: ${reasonKey(r.err)}`
      counts.set(key, (counts.get(key) || 0) + 1)
    }
    for (const [key, n] of [...counts].sort((a, b) => b[1] - a[1])) rows.push([name, String(n), key])
  }
  return mdTable(['variant', 'messages', 'outcome: reason (addresses shown by role)'], rows)
}

function layoutTable(report) {
  const c = tagCounts(report)
  return mdTable(
    ['domains with', 'count'],
    Object.entries(c).map(([k, n]) => [k, String(n)]),
  )
}

function summaryText(report) {
  const o = report.options
  const parts = [
    `Soak: ${o.messages} messages over ${o.domains} domains, seed ${o.seed}, ${o.concurrency} injecting sessions; ` +
      `total ${(report.wallMs / 1000).toFixed(1)} s`,
    '',
    layoutTable(report),
    '',
    accountingTable(report),
    '',
    'Time from injection to outcome, ms:',
    '',
    timingTable(report),
    '',
    byKindTable(report),
  ]
  const t = transitions(report)
  if (t) parts.push('', t)
  parts.push('', reasonsTable(report))
  return parts.join('\n')
}

function resultsMarkdown(report) {
  const o = report.options
  const stock = report.variants.stock
  return `# Soak run results

Written by \`npm run soak\` (\`node bench/soak.js\`); re-run with the same seed for the same fault layout.

- Run: ${report.startedAt.slice(0, 16).replace('T', ' ')} UTC, ${o.messages} messages over ${o.domains} domains,
  seed ${o.seed}, ${o.concurrency} parallel injecting SMTP sessions, ${(report.wallMs / 1000).toFixed(0)} s in all.
- Haraka 3.3.4 on Node ${process.version}, on a ${os.cpus().length}-core machine that other work may share: the times
  below move with its load from run to run; the counts and cross-checks do not.

## Set-up

- Every MX address is a loopback address with one role on the MX port: healthy sinks (${POOLS.healthy.length}
  addresses), closed ports (refused), black holes (${POOLS.blackhole.length} IPv4 and \`[::1]\`, python3 helpers
  whose accept queue is full), sinks that greet \`421\`, servers that accept and never greet, and
  \`fe80::\` addresses without a zone. DNS is the haraka-test-fixtures server: per domain NXDOMAIN,
  SERVFAIL, 200 ms answers (below the plugin's 500 ms timeout) or prompt answers. The first
  ${FAULTS.length} domains each carry one fault kind for sure; the rest is drawn by the seeded PRNG.
  Messages go to the domains in turn, so each domain's messages are spread over the run.
- Haraka \`outbound.ini\`: \`connect_timeout=5\`, \`temp_fail_intervals=1h*3\` (no retry during the run),
  \`local_mx_ok=true\`, \`enable_tls=false\`. Plugin: \`[dns] timeout_ms=500\`, \`[race] deadline_ms=5000\`
  (the race gives up after as long as stock waits on one dead address), \`[cache] max_entries=${o.cacheMaxEntries}\`,
  \`allow[]\` 127.0.0.0/8 and ::1/128, other keys at their defaults.
- The sender is \`${SENDER}\`, whose MX is one more healthy sink: every bounce sends one DSN
  there, which is checked against the bounces (by the \`X-Soak-Id\` header the DSN quotes). A null
  sender would have made Haraka drop bounces without trace.
- ${
    stock
      ? `Both variants run on port 25 (stock Haraka cannot use another), one after the other, each
  with fresh servers, DNS and Haraka, on the same layout and the same message order: every
  number below compares the same messages meeting the same faults. Stock Haraka has no filter,
  so it does connect to the \`fe80::\` addresses (which ${LINK_LOCAL_CONNECT.label} here:
  ${LINK_LOCAL_CONNECT.reason}) and to \`[::1]\`.`
      : 'Stock Haraka was not run.'
  }

## Fault layout

${layoutTable(report)}

## Accounting and health

${accountingTable(report)}

- Outcomes are read from Haraka's log by outbound uuid (the uuid from its \`250 Message Queued\`
  reply): one \`delivered\`, \`Temp failing\` or \`bouncing mail\` line per message.
- Sinks are matched by the \`X-Soak-Id\` header; the sink's address must be the \`ip=\` Haraka logged.
- The queue dir is read after the DSNs arrive: each file's todo header gives its uuid, which must
  be exactly the deferred ones.
- fds: \`/proc/<pid>/fd\` of the Haraka process, 0.5 s after start-up and again after the run (polled
  up to 15 s for the last timed-out connects to close). Open (non-listening) TCP sockets must be
  back to the baseline exactly; the total may be up to ${DEFAULTS.fdTolerance} higher, for a UDP socket that
  c-ares (the plugin's resolver, haraka-net-utils' and node:dns' default one) opens per resolver
  while it has queries and closes when idle: one may still be open at the moment of sampling.
- Health cache: a local probe plugin in the same Haraka reads the plugin's cache through Haraka's
  plugin registry; "peak" is its largest size right after any record, "distinct keys offered"
  how many different addresses and (MX host, family) pairs were recorded. Offered more keys than
  the bound, it stayed at the bound.

## Time from injection to outcome

From the moment the client starts sending a message to Haraka's timestamp on its outcome line,
in ms. A message counts in every row whose fault its domain has. The race wins on a TCP
connect, so a server that accepts and never greets costs the full \`connect_timeout\` with or
without the plugin (the v4-silent row); a black hole or a dead IPv6 path costs the plugin one
attempt delay (250 ms) instead.

${timingTable(report)}

${byKindTable(report)}

## Why messages were deferred or bounced

Each distinct reason Haraka logged (and put in the DSN), with domain names and loopback
addresses replaced by their role.

${reasonsTable(report)}
${
  stock
    ? `
Outcome of each message, plugin → stock:

${transitions(report)}
`
    : ''
}`
}

// ---------------------------------------------------------------------------------------------
// CLI

function parseCli(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      messages: { type: 'string', default: String(DEFAULTS.messages) },
      domains: { type: 'string', default: String(DEFAULTS.domains) },
      seed: { type: 'string', default: String(DEFAULTS.seed) },
      json: { type: 'boolean', default: false },
      'compare-stock': { type: 'boolean', default: true },
      'no-compare-stock': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  })
  const int = (name) => {
    const n = Number(values[name])
    if (!Number.isInteger(n) || n < 1)
      throw new Error(`--${name} must be a positive integer, not ${values[name]}`)
    return n
  }
  return {
    help: values.help,
    json: values.json,
    messages: int('messages'),
    domains: int('domains'),
    seed: int('seed'),
    compareStock: values['compare-stock'] && !values['no-compare-stock'],
  }
}

const USAGE = `usage: node bench/soak.js [--messages N] [--domains N] [--seed N] [--json] [--no-compare-stock]
  --messages N        messages to inject (default ${DEFAULTS.messages})
  --domains N         destination domains, each with its own fault mix (default ${DEFAULTS.domains})
  --seed N            PRNG seed of the fault layout (default ${DEFAULTS.seed})
  --json              print the whole report as JSON instead of tables
  --compare-stock     also run stock Haraka 3.3.4 on the same layout (default; needs port 25 free
                      on 127.77.x.y and [::1]); writes bench/soak-results.md
  --no-compare-stock  the plugin variant only, on a free port`

async function main() {
  let args
  try {
    args = parseCli(process.argv.slice(2))
  } catch (err) {
    console.error(`${err.message}\n${USAGE}`)
    process.exitCode = 2
    return
  }
  if (args.help) {
    console.log(USAGE)
    return
  }
  const report = await runSoak(args)
  if (args.json) console.log(JSON.stringify(report, null, 2))
  else console.log(summaryText(report))
  if (args.compareStock) {
    const prettier = require('prettier')
    const md = resultsMarkdown(report)
    const config = (await prettier.resolveConfig(RESULTS_FILE)) || {}
    await fsp.writeFile(RESULTS_FILE, await prettier.format(md, { ...config, filepath: RESULTS_FILE }))
    if (!args.json) console.log(`\nwritten: ${path.relative(process.cwd(), RESULTS_FILE)}`)
  }
  const ok = Object.values(report.variants).every((v) => v.consistent && v.haraka.alive)
  if (!ok) process.exitCode = 1
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err && err.stack ? err.stack : err)
    process.exitCode = 1
  })
}

module.exports = { runSoak, makeLayout, summaryText, resultsMarkdown, FAULTS, DEFAULTS }
