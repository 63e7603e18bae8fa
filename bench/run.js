'use strict'

// `npm run bench`: stock Haraka 3.3.4 against Haraka 3.3.4 + happy-eyeballs, on loopback.
// Every scenario runs both, interleaved run by run, each run in a fresh Haraka process; the
// medians go to a table on stdout, to bench/results.md and to bench/chart.svg.
//
// Stock Haraka connects to port 25 of an MX host and has no setting to change that, so the
// MX stand-ins listen on port 25: SMTP sinks on 127.0.0.1:25 (and 127.0.0.2:25 / [::1]:25
// where a scenario needs them) and a black hole (SYNs dropped) on [::1]:25. Scenarios 7-11 put a
// refusing or silent server on [::1]:25 in front of a working sink on 127.0.0.1:25.

const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { parseArgs } = require('node:util')

const support = require('../support')
const { zonelessLinkLocalConnect, assertZonelessLinkLocalStaysHere } = require('../test/support/link-local')
const { describeDelivery } = require('../dist/lib/delivery')

const { LINK_LOCAL, SEED_RECORDS, DUAL_RECORDS, V4_RECORDS, mx, oneMx, fmtMs, fmtDuration, fmtInt, median } =
  support

const ROOT = path.join(__dirname, '..')
const HARAKA_VERSION = require(path.join(support.HARAKA_VERSIONS['3.3.4'], 'package.json')).version
const PLUGIN_VERSION = require(path.join(ROOT, 'package.json')).version
const RESULTS_MD = path.join(__dirname, 'results.md')
const CHART_SVG = path.join(__dirname, 'chart.svg')
/** What stock Haraka's connect to the seed case's fe80:: AAAA does on this Node and host. */
const LINK_LOCAL_CONNECT = zonelessLinkLocalConnect()

// ---------------------------------------------------------------------------------------
// Options

const USAGE = `usage: node bench/run.js [--runs N] [--scenario N[,N...]] [--quick] [--write]
  --runs N       runs per scenario and variant (default 5; 3 where stock waits connect_timeout)
  --scenario N   only these scenarios (1-11); may be repeated or comma separated
  --concurrency N  connections submitting in scenario 5 (default 20)
  --messages N     timed messages per run in scenario 5 (default 500; 100 with --quick)
  --warmup N       untimed messages per run before them (default 20); a fresh Haraka keeps
                 compiling hot code for thousands of messages, so a long warm-up shows the
                 steady state
  --cpu-prof DIR   write a V8 CPU profile of every Haraka process of scenario 5 into DIR
                 (node --cpu-prof; one .cpuprofile per run, named by variant and run)
  --quick        stock connect_timeout=5 instead of 30, 2 runs, 100 messages in scenario 5
  --write        write bench/results.md and chart.svg even for a partial or --quick run
                 (a full run always writes them)`

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string' },
    scenario: { type: 'string', multiple: true },
    quick: { type: 'boolean', default: false },
    write: { type: 'boolean', default: false },
    concurrency: { type: 'string' },
    messages: { type: 'string' },
    warmup: { type: 'string' },
    'cpu-prof': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
})
if (args.help) {
  console.log(USAGE)
  process.exit(0)
}

/** Stock Haraka's failed connects in its first run, as `error; error`. */
function stockFailures(runsInfo) {
  return runsInfo.stock[0].failed.map((l) => l.replace(/^.*Failed to get socket: /, '')).join('; ')
}

function fail(msg) {
  console.error(`${msg}\n${USAGE}`)
  process.exit(2)
}

const runsOpt = args.runs === undefined ? undefined : Number(args.runs)
if (runsOpt !== undefined && !(Number.isInteger(runsOpt) && runsOpt >= 1 && runsOpt <= 50)) {
  fail(`--runs must be a whole number from 1 to 50, not ${args.runs}`)
}
const selected = (args.scenario || []).flatMap((s) => s.split(',')).map((s) => Number(s.trim()))
if (selected.some((n) => !Number.isInteger(n) || n < 1 || n > 11))
  fail('--scenario takes numbers from 1 to 11')
if (args.concurrency !== undefined && !/^([1-9]|[1-9]\d|100)$/.test(args.concurrency)) {
  fail(`--concurrency must be a whole number from 1 to 100, not ${args.concurrency}`)
}

/** A whole number option within [min, max], or the default when it is not given. */
function countOption(name, min, max, dflt) {
  const text = args[name]
  if (text === undefined) return dflt
  const n = Number(text)
  if (!/^\d+$/.test(text) || n < min || n > max)
    fail(`--${name} must be a whole number from ${min} to ${max}, not ${text}`)
  return n
}

const CPU_PROF_DIR = args['cpu-prof'] === undefined ? undefined : path.resolve(args['cpu-prof'])
if (CPU_PROF_DIR !== undefined) fs.mkdirSync(CPU_PROF_DIR, { recursive: true })

const QUICK = args.quick
const CONNECT_TIMEOUT_S = QUICK ? 5 : 30
const RUNS_FAST = runsOpt ?? (QUICK ? 2 : 5)
const RUNS_SLOW = runsOpt ?? (QUICK ? 2 : 3)
const BULK_MESSAGES = countOption('messages', 1, 20000, QUICK ? 100 : 500)
const BULK_WARMUP = countOption('warmup', 0, 20000, 20)
const BULK_CONCURRENCY = args.concurrency === undefined ? 20 : Number(args.concurrency)
const PLANNER_RUN_MS = 1000
const PLUGIN_INI = support.pluginIni(25)
const OUTBOUND = { enable_tls: false, local_mx_ok: true, connect_timeout: CONNECT_TIMEOUT_S }
// How long a scenario waits for port 25 when something else holds it for a moment.
const PORT25_WAIT_MS = 60000
// Whole-bench guard: every wait is bounded on its own; this catches what nobody foresaw.
const BENCH_LIMIT_MS = 25 * 60 * 1000

// ---------------------------------------------------------------------------------------
// The test network: one DNS fixture on loopback for every scenario

const ZONES = {
  // One untimed message per Haraka process first, so that no timing includes Haraka's
  // loading of its outbound modules on first use.
  ...oneMx('warm.bench', V4_RECORDS),
  // 1 and 4: a black-holed AAAA in front of a working A.
  ...oneMx('hole.bench', DUAL_RECORDS),
  // 2: two MX hosts, each with two black-holed AAAA and one working A. ::1 is the only IPv6
  // loopback address, so each host lists it twice (see the notes in results.md).
  'two.bench': mx([10, 'mx1.two.bench'], [20, 'mx2.two.bench']),
  'mx1.two.bench': { aaaa: ['::1', '::1'], a: ['127.0.0.1'] },
  'mx2.two.bench': { aaaa: ['::1', '::1'], a: ['127.0.0.2'] },
  // 3: the seed report, a link-local AAAA and a working A.
  ...oneMx('seed.bench', SEED_RECORDS),
  // 5: both families healthy.
  ...oneMx('happy.bench', DUAL_RECORDS),
  // 7-11: one MX host, AAAA ::1 (refusing or silent) and A 127.0.0.1 (sink).
  ...oneMx('greet421.bench', DUAL_RECORDS),
  ...oneMx('silent.bench', DUAL_RECORDS),
  ...oneMx('ptr.bench', DUAL_RECORDS),
  ...oneMx('guidelines.bench', DUAL_RECORDS),
  ...oneMx('rdns.bench', DUAL_RECORDS),
}

const VARIANTS = ['stock', 'plugin']

/** Node options of a profiled run: a CPU profile named by variant and run, in CPU_PROF_DIR. */
const profiled = (name) =>
  CPU_PROF_DIR && name
    ? {
        nodeArgs: [
          '--cpu-prof',
          '--cpu-prof-interval=100',
          `--cpu-prof-dir=${CPU_PROF_DIR}`,
          `--cpu-prof-name=${name}.cpuprofile`,
        ],
      }
    : {}

function harakaOptions(variant, dnsPort, profileName) {
  return variant === 'plugin'
    ? {
        ...profiled(profileName),
        dnsPort,
        plugins: ['happy-eyeballs'],
        outbound: OUTBOUND,
        files: { 'happy_eyeballs.ini': PLUGIN_INI },
        // The bench measures this working tree as built, not a packed copy of it.
        pluginFrom: 'checkout',
      }
    : { ...profiled(profileName), dnsPort, outbound: OUTBOUND }
}

const log = (text = '') => process.stdout.write(`${text}\n`)

/**
 * The MX stand-ins of one scenario, on port 25; closed with the scenario's scope. A sink is a
 * host, or startSink options with a host (a refusing or silent server).
 */
async function standIns(scope, { sinks = [], holes = [] }) {
  const sinkOpts = sinks.map((s) => (typeof s === 'string' ? { host: s } : s))
  const hosts = [...new Set([...holes, ...sinkOpts.map((s) => s.host)])]
  await support.waitForFreePort(hosts, 25, PORT25_WAIT_MS, (busy) =>
    log(`  port 25 is busy on ${busy.join(', ')}; waiting up to ${PORT25_WAIT_MS / 1000} s`),
  )
  const out = { sinks: [], holes: [] }
  for (const host of holes) out.holes.push(await scope.own(support.startBlackHole({ host, port: 25 })))
  for (const opts of sinkOpts) out.sinks.push(await scope.own(support.startSink({ ...opts, port: 25 })))
  return out
}

/**
 * One run: a fresh Haraka of the variant, one warm-up message, then fn(haraka); always stopped.
 * With a profileName and --cpu-prof, the process writes its CPU profile when it exits.
 */
async function withHaraka(ctx, variant, sinks, fn, profileName) {
  const scope = support.makeScope(`${variant} Haraka`)
  try {
    const h = await scope.own(support.startHaraka(harakaOptions(variant, ctx.dns.port, profileName)))
    await support.mustDeliver(h, sinks, 'warm.bench', { timeoutMs: 20000 })
    return await fn(h)
  } finally {
    await scope.close()
  }
}

const failedSocketLines = (text) => text.match(/\[outbound\]\s+Failed to get socket: .*$/gm) || []

/** Times one message per run to `domain`, both variants interleaved. */
async function timedDeliveries(ctx, { id, domain, runs, sinks, timeoutMs, before }) {
  const samples = { stock: [], plugin: [] }
  const runsInfo = { stock: [], plugin: [] }
  for (let i = 1; i <= runs; i++) {
    for (const variant of VARIANTS) {
      const info = await withHaraka(ctx, variant, sinks, async (h) => {
        const pre = before ? await before(h) : undefined
        const r = await support.mustDeliver(h, sinks, domain, { timeoutMs })
        if (r.outcome.ip !== '127.0.0.1')
          throw new Error(`delivered over ${r.outcome.ip}, expected 127.0.0.1`)
        const plugin = r.outcome.record
        if (variant === 'plugin' && !plugin) throw new Error(`no happy-eyeballs delivery record:\n${r.log()}`)
        return { ms: r.ms, failed: failedSocketLines(r.log()), plugin, pre }
      })
      samples[variant].push(info.ms)
      runsInfo[variant].push(info)
      log(`  [${id}] ${variant.padEnd(6)} run ${i}/${runs}: ${fmtMs(info.ms)}`)
    }
  }
  return { samples, runsInfo }
}

/**
 * One message to `domain` and its final outcome: the plugin's immediate retry of a policy
 * refusal (a deferral of 0 s) is followed to the outcome after it. `ms` runs from just before
 * the submission to the sink taking the message, or else to the outcome hook in Haraka.
 */
async function finalOutcome(h, sinks, domain, timeoutMs) {
  const to = `rcpt-${crypto.randomUUID()}@${domain}`
  const from = h.logLength()
  const wall0 = Date.now()
  const t0 = performance.now()
  const uuid = support.queuedUuid(await support.sendMail({ port: h.port, to }))
  let outcome = await support.waitForOutcome(h, timeoutMs, { from, uuid })
  let retries = 0
  for (; outcome.kind === 'deferred' && outcome.delay === 0 && retries < 3; retries++) {
    outcome = await support.waitForOutcome(h, timeoutMs, { from: outcome.offset + outcome.line.length, uuid })
  }
  const message = sinks.flatMap((s) => s.messages).find((m) => m.to.includes(to))
  if (outcome.kind === 'delivered' && !message) {
    throw new Error(`Haraka delivered a message to ${domain}, but no sink has it`)
  }
  const family = outcome.kind !== 'delivered' ? '' : outcome.ip.includes(':') ? 'IPv6' : 'IPv4'
  return {
    ms: message ? message.receivedAt - t0 : outcome.outcome.at - wall0,
    kind: outcome.kind,
    family,
    // What the outcome says: where it was delivered, or the reason Haraka gives.
    says: outcome.kind === 'delivered' ? `${outcome.ip}: ${outcome.response}` : outcome.err,
    retries,
    // Seconds until Haraka's retry, for a deferral.
    delay: outcome.delay,
    record: outcome.record,
    log: () => h.log().slice(from),
  }
}

/** 'delivered over IPv4', 'bounced': how a run ended. */
const outcomeName = (r) => (r.family ? `${r.kind} over ${r.family}` : r.kind)

/** How a run ended and what Haraka said, with the retry interval of a deferral. */
const outcomeDetail = (r) =>
  `${outcomeName(r)}${r.kind === 'deferred' ? ` (retry in ${r.delay} s)` : ''}: ${r.says}` +
  (r.retries ? ` (after ${r.retries} immediate retry)` : '')

/** The runs' outcome: the one name, or each with its count where runs disagree. */
function outcomesOf(runs) {
  const counts = new Map()
  for (const r of runs) counts.set(outcomeName(r), (counts.get(outcomeName(r)) || 0) + 1)
  return counts.size === 1 ? [...counts.keys()][0] : [...counts].map(([n, c]) => `${c}× ${n}`).join(', ')
}

/**
 * Scenarios 7-11: [::1]:25 (`six`, startSink options) refuses or never greets, 127.0.0.1:25
 * takes the message. Outcome and time per variant; a ratio only where both delivered.
 */
function ipv6RefusalScenario({ id, title, what, domain, six, sixSays, slow }) {
  return {
    id,
    title,
    slow,
    async run(ctx) {
      const scope = support.makeScope(`scenario ${id}`)
      try {
        const { sinks } = await standIns(scope, { sinks: [{ host: '::1', ...six }, '127.0.0.1'] })
        const runs = slow ? RUNS_SLOW : RUNS_FAST
        const timeoutMs = CONNECT_TIMEOUT_S * 1000 + 20000
        const runsInfo = { stock: [], plugin: [] }
        for (let i = 1; i <= runs; i++) {
          for (const variant of VARIANTS) {
            const r = await withHaraka(ctx, variant, sinks, (h) => finalOutcome(h, sinks, domain, timeoutMs))
            runsInfo[variant].push(r)
            log(`  [${id}] ${variant.padEnd(6)} run ${i}/${runs}: ${outcomeName(r)} in ${fmtMs(r.ms)}`)
          }
        }
        const samples = { stock: runsInfo.stock.map((r) => r.ms), plugin: runsInfo.plugin.map((r) => r.ms) }
        const stock = median(samples.stock)
        const plugin = median(samples.plugin)
        const allDelivered = [...runsInfo.stock, ...runsInfo.plugin].every((r) => r.kind === 'delivered')
        const first = (variant) => runsInfo[variant][0]
        const pluginRecord = first('plugin').record
        return {
          rows: [
            {
              id,
              what,
              stock: `${outcomesOf(runsInfo.stock)}, ${fmtMs(stock)}`,
              plugin: `${outcomesOf(runsInfo.plugin)}, ${fmtMs(plugin)}`,
              ratio: allDelivered ? speedup(stock, plugin) : '—',
            },
          ],
          details: [
            `MX ${domain} → mx.${domain}: AAAA ::1 (${sixSays}), A 127.0.0.1 (sink).`,
            `Stock (run 1): ${outcomeDetail(first('stock'))}`.replace(/\.?$/, '.'),
            `Plugin (run 1): ${outcomeDetail(first('plugin'))}`.replace(/\.?$/, '.'),
            ...(pluginRecord ? [`Plugin log (run 1): \`${describeDelivery(pluginRecord)}\``] : []),
            "Time: to the sink's receipt where delivered, to Haraka's deferred or bounce hook otherwise.",
          ],
          samples,
          unit: 'ms',
        }
      } finally {
        await scope.close()
      }
    },
  }
}

// The refusals as Gmail and Microsoft word them (test/e2e/policy.test.js).
const GMAIL_PTR = '5.7.25 [::1] The IP address sending this message does not have a PTR record setup'
const GMAIL_GUIDELINES =
  '5.7.1 [::1] Our system has detected that this message does not meet IPv6 sending guidelines ' +
  'regarding PTR records and authentication'
const MS_RDNS = '4.7.25 Service unavailable, sending IPv6 address [::1] must have reverse DNS record.'

// ---------------------------------------------------------------------------------------
// Scenarios. Each returns table rows and the details for results.md.

/** Max − min as a percentage of the median: how much one variant's runs disagree. */
const spread = (xs) => `±${((50 * (Math.max(...xs) - Math.min(...xs))) / median(xs)).toFixed(0)}%`

/** stock ÷ plugin for times: '65.3× faster', or just '0.97×' where they are about the same. */
function speedup(stock, plugin) {
  const r = stock / plugin
  return r >= 1.5 ? `${r.toFixed(1)}× faster` : `${r.toFixed(2)}×`
}

const SCENARIOS = [
  {
    id: 1,
    title: 'Black-holed AAAA in front of a working A',
    slow: true,
    async run(ctx) {
      const scope = support.makeScope('scenario 1')
      try {
        const { sinks } = await standIns(scope, { sinks: ['127.0.0.1'], holes: ['::1'] })
        const { samples, runsInfo } = await timedDeliveries(ctx, {
          id: 1,
          domain: 'hole.bench',
          runs: RUNS_SLOW,
          sinks,
          timeoutMs: CONNECT_TIMEOUT_S * 1000 + 20000,
        })
        const stock = median(samples.stock)
        const plugin = median(samples.plugin)
        const ratio = stock / plugin
        const met = plugin < 500 && ratio >= 50
        return {
          rows: [
            {
              id: 1,
              what: 'Black-holed AAAA + working A: injection → sink receipt',
              stock: fmtMs(stock),
              plugin: fmtMs(plugin),
              ratio: speedup(stock, plugin),
              chart: { label: '1 black-holed AAAA', stock, plugin },
            },
          ],
          target: `plugin < 500 ms and ≥ 50× faster: ${met ? 'met' : 'MISSED'} (${fmtMs(plugin)}, ${ratio.toFixed(1)}×)`,
          details: [
            `MX hole.bench → mx.hole.bench: AAAA ::1 (black hole), A 127.0.0.1 (sink).`,
            `Stock: ${runsInfo.stock[0].failed.length} failed attempt(s) per message: ${stockFailures(runsInfo)}.`,
            `Plugin log (run 1): \`${describeDelivery(runsInfo.plugin[0].plugin)}\``,
          ],
          samples,
          unit: 'ms',
        }
      } finally {
        await scope.close()
      }
    },
  },
  {
    id: 2,
    title: 'Two MX hosts, each with two black-holed AAAA and one A',
    slow: true,
    async run(ctx) {
      const scope = support.makeScope('scenario 2')
      try {
        const { sinks } = await standIns(scope, { sinks: ['127.0.0.1', '127.0.0.2'], holes: ['::1'] })
        const { samples, runsInfo } = await timedDeliveries(ctx, {
          id: 2,
          domain: 'two.bench',
          runs: RUNS_SLOW,
          sinks,
          timeoutMs: 2 * CONNECT_TIMEOUT_S * 1000 + 20000,
        })
        const stock = median(samples.stock)
        const plugin = median(samples.plugin)
        return {
          rows: [
            {
              id: 2,
              what: '2 MX × (2 black-holed AAAA + 1 A): time to 250',
              stock: fmtMs(stock),
              plugin: fmtMs(plugin),
              ratio: speedup(stock, plugin),
              chart: { label: '2 MX, 2 dead AAAA each', stock, plugin },
            },
          ],
          details: [
            'MX 10 mx1.two.bench: AAAA ::1, ::1 (black hole), A 127.0.0.1 (sink); ' +
              'MX 20 mx2.two.bench: AAAA ::1, ::1, A 127.0.0.2 (sink).',
            `Stock: ${runsInfo.stock[0].failed.length} failed attempt(s) per message: ${stockFailures(runsInfo)}.`,
            `Plugin log (run 1): \`${describeDelivery(runsInfo.plugin[0].plugin)}\``,
          ],
          samples,
          unit: 'ms',
        }
      } finally {
        await scope.close()
      }
    },
  },
  {
    id: 3,
    title: 'Seed case: link-local AAAA and a working A',
    // Stock's fe80:: attempt fails at once on Node 20, and waits connect_timeout on Node 22+
    // where an interface has a link-local address (test/support/link-local.js).
    slow: !LINK_LOCAL_CONNECT.fails,
    async run(ctx) {
      assertZonelessLinkLocalStaysHere(LINK_LOCAL_CONNECT)
      const scope = support.makeScope('scenario 3')
      try {
        const { sinks } = await standIns(scope, { sinks: ['127.0.0.1'] })
        const { samples, runsInfo } = await timedDeliveries(ctx, {
          id: 3,
          domain: 'seed.bench',
          runs: LINK_LOCAL_CONNECT.fails ? RUNS_FAST : RUNS_SLOW,
          sinks,
          timeoutMs: CONNECT_TIMEOUT_S * 1000 + 20000,
        })
        const stock = median(samples.stock)
        const plugin = median(samples.plugin)
        // Stock: each failed connect logs a line, the one that worked does not.
        const stockAttempts = median(runsInfo.stock.map((r) => r.failed.length + 1))
        const stockFailed = median(runsInfo.stock.map((r) => r.failed.length))
        const pluginAttempts = median(
          runsInfo.plugin.map((r) => (r.plugin.race ? r.plugin.race.attempts.length : 0)),
        )
        const pluginFiltered = median(runsInfo.plugin.map((r) => r.plugin.plan.filtered.length))
        return {
          rows: [
            {
              id: 3,
              what: 'Seed case (link-local AAAA + A): time to 250',
              stock: fmtMs(stock),
              plugin: fmtMs(plugin),
              ratio: speedup(stock, plugin),
              chart: { label: 'seed: link-local AAAA', stock, plugin },
            },
            {
              id: 3,
              what: 'Seed case: connection attempts per message',
              stock: `${stockAttempts} (${stockFailed} failed)`,
              plugin: `${pluginAttempts} (${pluginFiltered} filtered)`,
              ratio: '',
            },
          ],
          details: [
            `MX seed.bench → mx.seed.bench: AAAA ${LINK_LOCAL}, A 127.0.0.1 (sink).`,
            `Stock attempts: its \`Failed to get socket\` lines plus the connect that worked: ${stockFailures(runsInfo)}.`,
            `Plugin attempts: the entries of its race timeline. Log (run 1): \`${describeDelivery(runsInfo.plugin[0].plugin)}\``,
          ],
          samples,
          unit: 'ms',
        }
      } finally {
        await scope.close()
      }
    },
  },
  {
    id: 4,
    title: 'Second message to the MX of scenario 1 (health cache warm)',
    slow: true,
    async run(ctx) {
      const scope = support.makeScope('scenario 4')
      try {
        const { sinks } = await standIns(scope, { sinks: ['127.0.0.1'], holes: ['::1'] })
        const timeoutMs = CONNECT_TIMEOUT_S * 1000 + 20000
        const { samples, runsInfo } = await timedDeliveries(ctx, {
          id: 4,
          domain: 'hole.bench',
          runs: RUNS_SLOW,
          sinks,
          timeoutMs,
          // The first message, in the same Haraka process, is what fills the health cache.
          before: async (h) => (await support.mustDeliver(h, sinks, 'hole.bench', { timeoutMs })).ms,
        })
        const stock = median(samples.stock)
        const plugin = median(samples.plugin)
        return {
          rows: [
            {
              id: 4,
              what: 'Second message, same MX (health cache warm): time to 250',
              stock: fmtMs(stock),
              plugin: fmtMs(plugin),
              ratio: speedup(stock, plugin),
              chart: { label: '2nd message, same MX', stock, plugin },
            },
          ],
          details: [
            `Same DNS as scenario 1; each run sends one message, then times a second one through the same Haraka.`,
            `First messages (not in the medians): stock ${runsInfo.stock.map((r) => fmtMs(r.pre)).join(', ')}; ` +
              `plugin ${runsInfo.plugin.map((r) => fmtMs(r.pre)).join(', ')}.`,
            `Stock, second message: ${runsInfo.stock[0].failed.length} failed attempt(s) again (no memory of the first).`,
            `Plugin log, second message (run 1): \`${describeDelivery(runsInfo.plugin[0].plugin)}\``,
          ],
          samples,
          unit: 'ms',
        }
      } finally {
        await scope.close()
      }
    },
  },
  {
    id: 5,
    title: `Happy path: ${BULK_MESSAGES} messages, both families healthy`,
    slow: false,
    async run(ctx) {
      const scope = support.makeScope('scenario 5')
      try {
        const { sinks } = await standIns(scope, { sinks: ['::1', '127.0.0.1'] })
        const rates = { stock: [], plugin: [] }
        const rss = { stock: [], plugin: [] }
        const viaV6 = { stock: [], plugin: [] }
        const cpu = { stock: [], plugin: [] }
        for (let i = 1; i <= RUNS_FAST; i++) {
          for (const variant of VARIANTS) {
            const r = await withHaraka(
              ctx,
              variant,
              sinks,
              (h) => bulkRun(h, sinks, `${variant}${i}`),
              `scenario5-${variant}-${i}`,
            )
            rates[variant].push(r.rate)
            rss[variant].push(r.hwmMiB)
            viaV6[variant].push(r.viaV6)
            cpu[variant].push(r.cpuMsPerMsg)
            log(
              `  [5] ${variant.padEnd(6)} run ${i}/${RUNS_FAST}: ${r.rate.toFixed(1)} msg/s, ` +
                `${r.cpuMsPerMsg.toFixed(2)} ms CPU/msg, peak RSS ${r.hwmMiB.toFixed(1)} MiB, ` +
                `${r.viaV6}/${BULK_MESSAGES} over ::1`,
            )
          }
        }
        const stock = median(rates.stock)
        const plugin = median(rates.plugin)
        const ratio = plugin / stock
        const rssStock = median(rss.stock)
        const rssPlugin = median(rss.plugin)
        const cpuStock = median(cpu.stock)
        const cpuPlugin = median(cpu.plugin)
        return {
          rows: [
            {
              id: 5,
              what: `Happy path, ${BULK_MESSAGES} msgs at concurrency ${BULK_CONCURRENCY}: msg/s`,
              stock: stock.toFixed(1),
              plugin: plugin.toFixed(1),
              ratio: ratio.toFixed(3),
            },
            {
              id: 5,
              what: 'Happy path: Haraka CPU time per message',
              stock: `${cpuStock.toFixed(2)} ms`,
              plugin: `${cpuPlugin.toFixed(2)} ms`,
              ratio: `${(cpuPlugin / cpuStock).toFixed(2)}×`,
            },
            {
              id: 5,
              what: 'Happy path: peak RSS of the Haraka process (VmHWM)',
              stock: `${rssStock.toFixed(1)} MiB`,
              plugin: `${rssPlugin.toFixed(1)} MiB`,
              ratio: `${rssPlugin - rssStock >= 0 ? '+' : ''}${(rssPlugin - rssStock).toFixed(1)} MiB`,
            },
          ],
          target: `plugin/stock throughput ≥ 0.95: ${ratio >= 0.95 ? 'met' : 'MISSED'} (${ratio.toFixed(3)})`,
          details: [
            'MX happy.bench → mx.happy.bench: AAAA ::1 (sink on [::1]:25), A 127.0.0.1 (sink on 127.0.0.1:25).',
            `Per run: a fresh Haraka, ${BULK_WARMUP} untimed warm-up messages, then ${BULK_MESSAGES} messages ` +
              `submitted through a nodemailer pool of ${BULK_CONCURRENCY} connections; msg/s = messages / ` +
              '(first submission → last sink receipt). Peak RSS: VmHWM of the Haraka process after the run.',
            `msg/s per run: stock ${rates.stock.map((x) => x.toFixed(1)).join(', ')}; ` +
              `plugin ${rates.plugin.map((x) => x.toFixed(1)).join(', ')} ` +
              `(spread: stock ${spread(rates.stock)}, plugin ${spread(rates.plugin)}); median of the ` +
              `plugin ÷ stock ratios of runs made back to back: ${median(
                rates.plugin.map((x, i) => x / rates.stock[i]),
              ).toFixed(3)}.`,
            `Haraka CPU (user + system, /proc/<pid>/stat) per message, per run (ms): stock ` +
              `${cpu.stock.map((x) => x.toFixed(2)).join(', ')}; plugin ${cpu.plugin.map((x) => x.toFixed(2)).join(', ')}.`,
            `Peak RSS per run (MiB): stock ${rss.stock.map((x) => x.toFixed(1)).join(', ')}; ` +
              `plugin ${rss.plugin.map((x) => x.toFixed(1)).join(', ')}.`,
            `Messages delivered over ::1 per run: stock ${viaV6.stock.join(', ')}; plugin ${viaV6.plugin.join(', ')} ` +
              `(of ${BULK_MESSAGES}; the rest over 127.0.0.1).`,
          ],
          samples: rates,
          unit: 'msg/s',
        }
      } finally {
        await scope.close()
      }
    },
  },
  {
    id: 6,
    title: 'Planner alone, in-process (cached DNS)',
    slow: false,
    async run() {
      const samples = []
      await plannerRun(300) // warm-up, not counted
      for (let i = 1; i <= RUNS_FAST; i++) {
        const rate = await plannerRun(PLANNER_RUN_MS)
        samples.push(rate)
        log(`  [6] plugin run ${i}/${RUNS_FAST}: ${fmtInt(rate)} plans/s`)
      }
      const plugin = median(samples)
      return {
        rows: [
          {
            id: 6,
            what: 'Planner alone, 2 MX × 4 addresses, cached DNS: plans/s',
            stock: '—',
            plugin: fmtInt(plugin),
            ratio: '—',
          },
        ],
        details: [
          'routeDomain (lib/route) with racing off: MX lookup, AAAA + A per host, classify, order, ' +
            'MX entries, answered by an in-memory DnsClient (2 MX hosts × 2 AAAA + 2 A). Stock Haraka has no ' +
            'such step to compare with.',
          `plans/s per run (${PLANNER_RUN_MS} ms each): ${samples.map(fmtInt).join(', ')}.`,
        ],
        samples: { stock: [], plugin: samples },
        unit: 'plans/s',
      }
    },
  },
  ipv6RefusalScenario({
    id: 7,
    title: '421 greeting on IPv6, working IPv4 on the same MX host',
    what: '421 greeting on IPv6 + working A: outcome, time',
    domain: 'greet421.bench',
    six: { greeting: '421 4.7.0 mx.greet421.bench IPv6 not accepted' },
    sixSays: 'sink greeting `421 4.7.0 … IPv6 not accepted` and closing',
    slow: false,
  }),
  ipv6RefusalScenario({
    id: 8,
    title: 'IPv6 accepts TCP and never greets, working IPv4 on the same MX host',
    what: 'silent IPv6 (TCP, no greeting) + working A: outcome, time',
    domain: 'silent.bench',
    six: { silent: true },
    sixSays: 'accepts TCP, never greets',
    // Stock waits connect_timeout for the greeting.
    slow: true,
  }),
  ipv6RefusalScenario({
    id: 9,
    title: 'Gmail 550 5.7.25 (no PTR) at RCPT over IPv6',
    what: '550 5.7.25 PTR at RCPT over IPv6: outcome, time',
    domain: 'ptr.bench',
    six: { refuse: { stage: 'rcpt', code: 550, text: GMAIL_PTR } },
    sixSays: 'sink refusing RCPT with `550 5.7.25 … PTR record`',
    slow: false,
  }),
  ipv6RefusalScenario({
    id: 10,
    title: 'Gmail 550 5.7.1 (IPv6 sending guidelines) at the end of DATA over IPv6',
    what: '550 5.7.1 IPv6 guidelines at end of DATA: outcome, time',
    domain: 'guidelines.bench',
    six: { refuse: { stage: 'data', code: 550, text: GMAIL_GUIDELINES } },
    sixSays: 'sink refusing the final dot with `550 5.7.1 … IPv6 sending guidelines`',
    slow: false,
  }),
  ipv6RefusalScenario({
    id: 11,
    title: 'Microsoft 450 4.7.25 (no reverse DNS) at MAIL over IPv6',
    what: '450 4.7.25 rDNS at MAIL over IPv6: outcome, time',
    domain: 'rdns.bench',
    six: { refuse: { stage: 'mail', code: 450, text: MS_RDNS } },
    sixSays: 'sink refusing MAIL with `450 4.7.25 … must have reverse DNS record`',
    slow: false,
  }),
]

/** Scenario 5, one run: warm-up, then BULK_MESSAGES through a pooled client at bounded concurrency. */
async function bulkRun(h, sinks, tag) {
  const transport = support.submitTransport(h.port, { pool: BULK_CONCURRENCY })
  const send = (to) => transport.sendMail({ from: 'sender@haraka.test', to, subject: 'bench', text: 'hello' })
  const countOf = (prefix) =>
    sinks.reduce((n, s) => n + s.messages.filter((m) => m.to[0].startsWith(prefix)).length, 0)
  const until = (check, timeoutMs, what) => support.waitUntil(check, timeoutMs, what, { everyMs: 5 })
  try {
    const warm = `warm-${tag}-`
    await Promise.all(Array.from({ length: BULK_WARMUP }, (_, i) => send(`${warm}${i}@happy.bench`)))
    await until(() => countOf(warm) >= BULK_WARMUP, 30000 + 100 * BULK_WARMUP, 'the warm-up messages')

    const prefix = `bulk-${tag}-`
    const cpu0 = support.procCpuMs(h.pid)
    const t0 = performance.now()
    await Promise.all(Array.from({ length: BULK_MESSAGES }, (_, i) => send(`${prefix}${i}@happy.bench`)))
    await until(
      () => countOf(prefix) >= BULK_MESSAGES,
      Math.max(180000, 100 * BULK_MESSAGES),
      `${BULK_MESSAGES} messages at the sinks`,
    )
    const mine = sinks.flatMap((s) => s.messages.filter((m) => m.to[0].startsWith(prefix)))
    const last = Math.max(...mine.map((m) => m.receivedAt))
    const viaV6 = sinks
      .find((s) => s.host === '::1')
      .messages.filter((m) => m.to[0].startsWith(prefix)).length
    return {
      rate: BULK_MESSAGES / ((last - t0) / 1000),
      cpuMsPerMsg: (support.procCpuMs(h.pid) - cpu0) / BULK_MESSAGES,
      hwmMiB: support.procStatusKb(h.pid, 'VmHWM') / 1024,
      viaV6,
    }
  } finally {
    transport.close()
  }
}

/** Scenario 6, one run: how many plans routeDomain makes in `ms` milliseconds. */
async function plannerRun(ms) {
  const { routeDomain } = require('../dist/lib/route')
  const { parseSettings } = require('../dist/lib/config')
  const { HealthCache } = require('../dist/lib/health')
  // Unique-local and private addresses, re-permitted by allow[]: with racing off nothing is
  // ever connected to; they only have to pass the filter the way real MX addresses do.
  const { settings, problems } = parseSettings({
    main: { port: '25' },
    filter: { allow: ['fd00::/8', '10.0.0.0/8'] },
    race: { enabled: 'false' },
  })
  if (problems.length) throw new Error(`planner settings: ${problems.join('; ')}`)
  const hosts = {
    'mx1.plan.bench': { v6: ['fd00::1:1', 'fd00::1:2'], v4: ['10.0.1.1', '10.0.1.2'] },
    'mx2.plan.bench': { v6: ['fd00::2:1', 'fd00::2:2'], v4: ['10.0.2.1', '10.0.2.2'] },
  }
  const dns = {
    resolveMx: async () => [
      { exchange: 'mx1.plan.bench', priority: 10 },
      { exchange: 'mx2.plan.bench', priority: 20 },
    ],
    resolve6: async (name) => hosts[name].v6.slice(),
    resolve4: async (name) => hosts[name].v4.slice(),
  }
  const health = new HealthCache({ ttlMs: settings.cache.ttlS * 1000, maxEntries: settings.cache.maxEntries })
  const deps = { settings, dns, health }

  const first = (await routeDomain('plan.bench', deps)).decision
  if (first.action !== 'deliver' || first.targets.length !== 8) {
    throw new Error(`planner: expected 8 entries to deliver to, got ${JSON.stringify(first)}`)
  }
  let count = 0
  const t0 = performance.now()
  let elapsed = 0
  while (elapsed < ms) {
    for (let i = 0; i < 100; i++) await routeDomain('plan.bench', deps)
    count += 100
    elapsed = performance.now() - t0
  }
  return count / (elapsed / 1000)
}

// ---------------------------------------------------------------------------------------
// Output: table, results.md, chart.svg

function machine() {
  const cpus = os.cpus()
  return {
    cpu: cpus[0] ? cpus[0].model.trim() : 'unknown',
    cores: cpus.length,
    memGiB: os.totalmem() / 1024 ** 3,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    libuv: process.versions.uv,
    linkLocal: LINK_LOCAL_CONNECT,
    haraka: HARAKA_VERSION,
    plugin: PLUGIN_VERSION,
  }
}

function printTable(rows) {
  const header = ['#', 'scenario', 'stock median', 'plugin median', 'ratio']
  const body = rows.map((r) => [String(r.id), r.what, r.stock, r.plugin, r.ratio])
  const table = support.columns([header, header.map((h) => '-'.repeat(h.length)), ...body], {
    align: 'rlrrl',
  })
  log(table)
}

const mdCell = (s) => String(s).replace(/\|/g, '\\|')

function resultsMarkdown({ results, m, started, totalMs, partial }) {
  const rows = results.flatMap((r) => r.rows)
  const slowIds = SCENARIOS.filter((sc) => sc.slow)
    .map((sc) => sc.id)
    .join(', ')
  const lines = []
  lines.push('# Benchmark: stock Haraka vs Haraka + happy-eyeballs', '')
  lines.push(
    `Written by \`npm run bench\` (bench/run.js) on ${started.toISOString().replace(/\.\d+Z$/, 'Z')}; ` +
      `total runtime ${fmtDuration(totalMs)}.` +
      (partial ? ` Partial run: ${partial}.` : ''),
    '',
  )
  lines.push('## Machine', '')
  lines.push(
    `- CPU: ${m.cpu}, ${m.cores} cores; memory ${m.memGiB.toFixed(1)} GiB; ${m.os}`,
    `- Node ${m.node} (libuv ${m.libuv}); Haraka ${m.haraka}; haraka-plugin-happy-eyeballs ${m.plugin}`,
    `- A connect to fe80:: without a zone ${m.linkLocal.label} here (${m.linkLocal.reason}): ` +
      "that is stock Haraka's first attempt in scenario 3",
    `- Runs per variant: ${RUNS_SLOW} where stock waits connect_timeout (${slowIds}), ${RUNS_FAST} otherwise; ` +
      'stock and plugin runs interleaved; each run in a fresh Haraka process',
    '',
  )
  lines.push('## Results (medians)', '')
  lines.push('| # | Scenario | Stock median | Plugin median | Ratio |', '|---|---|---|---|---|')
  for (const r of rows) {
    lines.push(
      `| ${r.id} | ${mdCell(r.what)} | ${mdCell(r.stock)} | ${mdCell(r.plugin)} | ${mdCell(r.ratio)} |`,
    )
  }
  lines.push('')
  const targets = results.filter((r) => r.target)
  if (targets.length) {
    lines.push('Targets:', '')
    for (const r of targets) lines.push(`- Scenario ${r.id}: ${r.target}`)
    lines.push('')
  }
  if (results.some((r) => r.rows.some((row) => row.chart))) {
    lines.push('![Scenarios 1–4, median time to delivery, log scale](chart.svg)', '')
  }
  lines.push('## Scenarios', '')
  for (const r of results) {
    lines.push(`### ${r.id}. ${r.title}`, '')
    for (const d of r.details) lines.push(`- ${d}`)
    if (r.unit === 'ms') {
      lines.push(
        `- Samples: stock ${r.samples.stock.map(fmtMs).join(', ')}; plugin ${r.samples.plugin.map(fmtMs).join(', ')}.`,
      )
    }
    lines.push('')
  }
  lines.push('## Setup', '')
  lines.push(
    '- Everything on loopback: a DNS fixture (haraka-test-fixtures) on 127.0.0.1 answers every lookup of ' +
      'both Haraka variants and of the plugin; SMTP sinks (smtp-server) and a black hole (a listening ' +
      'socket whose accept queue is full and never drained, so SYNs are dropped) stand in for MX hosts.',
    `- outbound.ini for both: ${Object.entries(OUTBOUND)
      .map(([k, v]) => `\`${k}=${v}\``)
      .join(', ')} (local_mx_ok lets loopback stand in for a remote MX).`,
    '- happy_eyeballs.ini for the plugin (every other key at its default: prefer=ipv6, ' +
      'attempt_delay_ms=250, group_delay_ms=2000, deadline_ms=15000, ttl_s=600):',
    '',
    '```ini',
    PLUGIN_INI.trim(),
    '',
    '[dns]',
    'servers=127.0.0.1:<fixture port>',
    '```',
    '',
  )
  lines.push('## Notes', '')
  lines.push(
    '- Time to 250 = from just before the message is submitted to Haraka (nodemailer, new connection) to ' +
      'the moment the sink accepts it (just before its 250 reply). It includes the submission itself ' +
      '(~60 ms), and a fixed 100 ms pause smtp-server makes before every greeting (early-talker check), ' +
      'for stock and plugin alike.',
    '- Each Haraka process first delivers one untimed message to a healthy domain, so that no timing ' +
      "includes Haraka's loading of its outbound modules on first use.",
    '- Scenario 2: ::1 is the only IPv6 loopback address, so each MX host lists `::1` twice as its two ' +
      'black-holed AAAA records. Stock Haraka tries every entry (two 30 s waits before the first A); the ' +
      'plugin drops duplicate addresses, so its plan holds ::1 once. With two distinct dead AAAA per host ' +
      'the plugin would still reach the first A after one attempt delay (250 ms, families interleaved), so ' +
      "the duplicates do not flatter the plugin's number.",
    '- Scenario 4 (plugin): the first message records the black-holed ::1 as failed in the health cache, so ' +
      'the second message starts with IPv4 and makes no attempt on ::1 at all.',
    '- Scenario 5: stock Haraka 3.3.4 tries AAAA before A, and the plugin prefers IPv6, so both deliver ' +
      "over [::1]:25 here. Haraka's single thread is the bottleneck (about 6 ms of CPU per message), and " +
      'it shares 2 cores with the sinks and the submitting client, so msg/s moves from run to run (see the ' +
      'per-run numbers); CPU per message is the steadier measure of what the plugin adds.',
    '- Scenarios 7-11: each message ends in one of delivered (over which family), deferred or bounced, ' +
      'timed from just before its submission to the sink taking it, or to the deferred or bounce hook ' +
      "in Haraka (the recorder plugin's timestamp). Stock Haraka 3.3.4 uses the AAAA first, as in " +
      'scenario 5, and takes the refusal at face value: a 5xx bounces, a 4xx (or a 421 greeting) defers ' +
      "for Haraka's retry interval, and its time is the time to that outcome, not to a delivery. The " +
      "plugin's policy retry is a 0 s deferral retried at once over IPv4; its time runs to the IPv4 " +
      'delivery. A ratio only where both delivered (scenario 8, where stock waits connect_timeout for ' +
      'the greeting that never comes, then tries the A).',
    '- Ratios: time scenarios stock ÷ plugin; msg/s plugin ÷ stock; CPU plugin ÷ stock; RSS plugin − stock.',
    '',
  )
  return lines.join('\n')
}

/** Axis labels on powers of ten: 10 ms, 100 ms, 1 s, 10 s, 100 s. */
const tick = (ms) => (ms < 1000 ? `${Math.round(ms)} ms` : `${Math.round(ms / 1000)} s`)

/** A hand-made bar chart of scenarios 1–4 (median ms, log scale), stock next to plugin. */
function chartSvg(results) {
  const bars = results.flatMap((r) => r.rows.filter((row) => row.chart).map((row) => row.chart))
  const W = 760
  const H = 400
  const left = 80
  const right = 20
  const top = 50
  const bottom = 80
  const values = bars.flatMap((b) => [b.stock, b.plugin]).filter((v) => v > 0)
  const lo = 10 ** Math.floor(Math.log10(Math.min(...values)))
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...values)))
  const plotH = H - top - bottom
  const y = (v) => top + plotH * (1 - (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)))
  const groupW = (W - left - right) / bars.length
  const barW = Math.min(60, groupW / 3)
  const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
  const out = []
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
      'font-family="Helvetica, Arial, sans-serif" font-size="12">',
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${W / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">` +
      `Median time to delivery, stock Haraka ${HARAKA_VERSION} vs + happy-eyeballs (log scale)</text>`,
  )
  for (let v = lo; v <= hi + 1e-9; v *= 10) {
    const yy = y(v).toFixed(1)
    out.push(
      `<line x1="${left}" y1="${yy}" x2="${W - right}" y2="${yy}" stroke="#dddddd"/>`,
      `<text x="${left - 8}" y="${yy}" text-anchor="end" dominant-baseline="middle">${esc(tick(v))}</text>`,
    )
  }
  out.push(
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${H - bottom}" stroke="#333333"/>`,
    `<line x1="${left}" y1="${H - bottom}" x2="${W - right}" y2="${H - bottom}" stroke="#333333"/>`,
  )
  const colours = { stock: '#c0392b', plugin: '#2471a3' }
  bars.forEach((b, i) => {
    const cx = left + groupW * (i + 0.5)
    for (const [j, variant] of ['stock', 'plugin'].entries()) {
      const v = b[variant]
      if (!(v > 0)) continue
      const x = cx + (j === 0 ? -barW - 2 : 2)
      const yy = y(v)
      out.push(
        `<rect x="${x.toFixed(1)}" y="${yy.toFixed(1)}" width="${barW.toFixed(1)}" ` +
          `height="${(H - bottom - yy).toFixed(1)}" fill="${colours[variant]}"/>`,
        `<text x="${(x + barW / 2).toFixed(1)}" y="${(yy - 5).toFixed(1)}" text-anchor="middle">${esc(fmtMs(v))}</text>`,
      )
    }
    out.push(
      `<text x="${cx.toFixed(1)}" y="${H - bottom + 18}" text-anchor="middle">${esc(`${i + 1}. ${b.label}`)}</text>`,
      `<text x="${cx.toFixed(1)}" y="${H - bottom + 34}" text-anchor="middle" fill="#555555">` +
        `${esc(speedup(b.stock, b.plugin))}</text>`,
    )
  })
  const ly = H - 22
  out.push(
    `<rect x="${left}" y="${ly - 10}" width="12" height="12" fill="${colours.stock}"/>`,
    `<text x="${left + 18}" y="${ly}">stock Haraka ${HARAKA_VERSION} (connect_timeout=${CONNECT_TIMEOUT_S})</text>`,
    `<rect x="${left + 300}" y="${ly - 10}" width="12" height="12" fill="${colours.plugin}"/>`,
    `<text x="${left + 318}" y="${ly}">Haraka ${HARAKA_VERSION} + happy-eyeballs</text>`,
    '</svg>',
    '',
  )
  return out.join('\n')
}

async function formatMarkdown(text) {
  try {
    const prettier = require('prettier')
    const options = (await prettier.resolveConfig(RESULTS_MD)) || {}
    return await prettier.format(text, { ...options, parser: 'markdown' })
  } catch {
    return text
  }
}

// ---------------------------------------------------------------------------------------

async function main() {
  support.closeScopesOnExit()
  const started = new Date()
  const t0 = performance.now()
  const root = support.makeScope('bench')
  const guard = setTimeout(() => {
    console.error(`bench: still running after ${BENCH_LIMIT_MS / 60000} min, stopping`)
    root.close().then(() => process.exit(1))
  }, BENCH_LIMIT_MS)
  guard.unref()

  const chosen = SCENARIOS.filter((s) => !selected.length || selected.includes(s.id))
  const m = machine()
  log(
    `happy-eyeballs bench: Haraka ${m.haraka}, Node ${m.node} (libuv ${m.libuv}), ${m.cpu} × ${m.cores}, ` +
      `${m.memGiB.toFixed(1)} GiB`,
  )
  log(`a connect to fe80:: without a zone ${m.linkLocal.label} (${m.linkLocal.reason})`)
  log(
    `stock connect_timeout=${CONNECT_TIMEOUT_S}${QUICK ? ' (--quick)' : ''}; runs ${RUNS_SLOW} (slow) / ${RUNS_FAST}; ` +
      `scenarios ${chosen.map((s) => s.id).join(', ')}`,
  )

  let code = 0
  const results = []
  const ctx = { dns: null }
  try {
    if (chosen.some((s) => s.id !== 6)) {
      ctx.dns = await root.own(support.startDns(ZONES))
    }
    for (const s of chosen) {
      log(`\n[${s.id}] ${s.title}`)
      const sStart = performance.now()
      try {
        const r = await s.run(ctx)
        results.push({ id: s.id, title: s.title, ...r })
        log(
          `  [${s.id}] done in ${fmtMs(performance.now() - sStart)}${r.target ? `; target ${r.target}` : ''}`,
        )
      } catch (err) {
        code = 1
        console.error(`  [${s.id}] FAILED: ${err && err.stack ? err.stack : err}`)
      }
    }
  } catch (err) {
    code = 1
    console.error(`bench failed: ${err && err.stack ? err.stack : err}`)
  } finally {
    await root.close()
    clearTimeout(guard)
  }

  const totalMs = performance.now() - t0
  if (results.length) {
    log('\nResults (medians)')
    printTable(results.flatMap((r) => r.rows))
    for (const r of results) if (r.target) log(`target, scenario ${r.id}: ${r.target}`)
  }
  log(`\ntotal runtime ${fmtDuration(totalMs)}`)

  const partialWhy = [
    selected.length ? `scenarios ${chosen.map((s) => s.id).join(', ')} only` : '',
    QUICK ? '--quick (stock connect_timeout=5, fewer runs and messages)' : '',
    results.length < chosen.length ? 'some scenarios failed' : '',
  ]
    .filter(Boolean)
    .join('; ')
  const full = !selected.length && !QUICK
  if (results.length && (full || args.write)) {
    fs.writeFileSync(
      RESULTS_MD,
      await formatMarkdown(resultsMarkdown({ results, m, started, totalMs, partial: partialWhy })),
    )
    log(`wrote ${path.relative(ROOT, RESULTS_MD)}`)
    if (results.some((r) => r.rows.some((row) => row.chart))) {
      fs.writeFileSync(CHART_SVG, chartSvg(results))
      log(`wrote ${path.relative(ROOT, CHART_SVG)}`)
    }
  } else if (results.length) {
    log('partial or --quick run: bench/results.md and chart.svg left as they were (--write to replace them)')
  }
  process.exit(code)
}

main()
