'use strict'

// `npm start`: one message to a dual-stack MX whose IPv6 path is broken, first through
// Haraka 3.3.4 with the happy-eyeballs plugin, then through stock Haraka 3.3.4, all on
// loopback. The MX host has a link-local AAAA (unroutable), a black-holed AAAA (::1, SYNs
// dropped) and a working A (127.0.0.1). Exits non-zero when a delivery did not happen.

const path = require('node:path')
const { parseArgs } = require('node:util')

const support = require('../support')
const { describeDelivery } = require('../dist/lib/delivery')

const { LINK_LOCAL, V4_RECORDS, columns, fmtMs, oneMx } = support

const HARAKA_VERSION = require(path.join(support.HARAKA_VERSIONS['3.3.4'], 'package.json')).version
const DOMAIN = 'dual.example'
const MX = `mx.${DOMAIN}`
const WARM = 'ok.example'
const ZONES = {
  ...oneMx(DOMAIN, { aaaa: [LINK_LOCAL, '::1'], a: ['127.0.0.1'] }),
  // A healthy domain for one untimed message per Haraka, so that neither run's timing
  // includes Haraka's loading of its outbound modules on first use.
  ...oneMx(WARM, V4_RECORDS),
}
const PLUGIN_CONNECT_TIMEOUT_S = 30

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
})
if (args.help) {
  console.log(`usage: node demo/run.js [--quick]
  --quick  stock Haraka gets connect_timeout=5 instead of 30 (it then waits 5 s, not 30 s, on the black hole)`)
  process.exit(0)
}
const STOCK_CONNECT_TIMEOUT_S = args.quick ? 5 : 30

const out = (text = '') => process.stdout.write(`${text}\n`)
const heading = (text) => out(`\n${text}\n${'-'.repeat(text.length)}`)

/** Haraka's delivered hook parameters and the sink's receipt time, as two aligned lines. */
function deliveryLines(r) {
  const o = r.outcome
  return columns(
    [
      ['Haraka', `delivered to ${o.host} ip=${o.ip} port=${o.port}, reply ${o.response}`],
      ['sink', `received after ${fmtMs(r.ms)} (injection → sink receipt)`],
    ],
    { indent: '  ' },
  )
}

const showTarget = (t) => (t.family === 'ipv6' ? `[${t.address}]:${t.port}` : `${t.address}:${t.port}`)

/** One race attempt as the demo's timeline row: start, target, what happened. */
function attemptRow(a) {
  const what = a.outcome === 'failed' || a.outcome === 'timed out' ? `${a.outcome} (${a.error})` : a.outcome
  const took = a.endMs === undefined ? '' : ` after ${a.endMs - a.startMs} ms`
  return [`+${a.startMs} ms`, showTarget(a.target), `${what}${took}`]
}

async function pluginRun(dns) {
  const scope = support.makeScope('plugin run')
  try {
    const hole = await scope.own(support.startBlackHole({ host: '::1' }))
    const port = hole.port
    const sink = await scope.own(support.startSink({ host: '127.0.0.1', port }))
    const h = await scope.own(
      support.startHaraka({
        dnsPort: dns.port,
        plugins: ['happy-eyeballs'],
        outbound: { connect_timeout: PLUGIN_CONNECT_TIMEOUT_S },
        files: { 'happy_eyeballs.ini': support.pluginIni(port) },
        // The demo shows this working tree as built.
        pluginFrom: 'checkout',
      }),
    )

    heading(`2. Haraka ${HARAKA_VERSION} + happy-eyeballs`)
    out(
      columns([
        [
          'Haraka',
          `pid ${h.pid}, listening on 127.0.0.1:${h.port}, outbound connect_timeout=${PLUGIN_CONNECT_TIMEOUT_S}`,
        ],
        [
          'happy_eyeballs.ini',
          `port=${port}, allow[]=127.0.0.0/8 and ::1/128 (loopback stands in for the MX)`,
        ],
        ['black hole', `[::1]:${port}, pid ${hole.pid}`],
        ['SMTP sink', `127.0.0.1:${port}`],
      ]),
    )
    await support.mustDeliver(h, [sink], WARM)
    out(`warm-up message to ${WARM} delivered (not timed)`)

    const r = await support.deliverOne(h, [sink], DOMAIN, { timeoutMs: 20000 })
    out(`injected a message for rcpt@${DOMAIN} (queue id ${r.uuid || '?'})`)
    const record = r.outcome.record
    if (!record || !record.plan) throw new Error(`no happy-eyeballs plan for ${DOMAIN}:\n${r.log()}`)
    const attempts = record.race ? record.race.attempts : []
    const winner = record.decision.winner ? record.decision.winner.address : ''

    out('\nPlan (the order Haraka is given)')
    out(
      columns(
        [
          ...record.plan.kept.map((k, i) => [`kept ${i + 1}`, k.exchange, k.address, '']),
          ...record.plan.filtered.map((f) => ['filtered', f.exchange, f.address, f.reason]),
        ],
        { indent: '  ' },
      ),
    )
    out('\nRace (RFC 8305: next address after 250 ms without an answer)')
    out(columns(attempts.map(attemptRow), { indent: '  ', align: 'r' }))
    out(`  winner ${winner || '(none)'}`)

    out('\nDelivery')
    if (r.outcome.kind !== 'delivered') {
      out(`  NOT delivered: ${r.outcome.line}`)
      return { ok: false }
    }
    out(deliveryLines(r))
    out(`\n  log: ${describeDelivery(record)}`)
    const ok = Boolean(r.message) && r.outcome.ip === '127.0.0.1' && winner === '127.0.0.1'
    return { ok, ms: r.ms, race: attempts, filtered: record.plan.filtered.length }
  } finally {
    await scope.close()
  }
}

async function stockRun(dns) {
  const scope = support.makeScope('stock run')
  try {
    heading(`3. Stock Haraka ${HARAKA_VERSION} (no plugin)`)
    let hole, sink
    try {
      hole = await scope.own(support.startBlackHole({ host: '::1', port: 25 }))
      sink = await scope.own(support.startSink({ host: '127.0.0.1', port: 25 }))
    } catch (err) {
      out(`cannot run the stock comparison: ${err.message}`)
      return { ok: false }
    }
    const h = await scope.own(
      support.startHaraka({ dnsPort: dns.port, outbound: { connect_timeout: STOCK_CONNECT_TIMEOUT_S } }),
    )
    out(
      columns([
        [
          'Haraka',
          `pid ${h.pid}, listening on 127.0.0.1:${h.port}, outbound connect_timeout=${STOCK_CONNECT_TIMEOUT_S}` +
            (args.quick ? ' (--quick)' : ''),
        ],
        ['', 'local_mx_ok=true so loopback may stand in for the MX; stock always uses MX port 25'],
        ['black hole', `[::1]:25, pid ${hole.pid}`],
        ['SMTP sink', '127.0.0.1:25'],
      ]),
    )
    await support.mustDeliver(h, [sink], WARM)
    out(`warm-up message to ${WARM} delivered (not timed)`)
    out(`injected a message for rcpt@${DOMAIN}; stock tries every AAAA, then every A, one at a time ...`)

    // Stock Haraka's failed connects are in its log only.
    const watch = support.collectLines(h, /\[outbound\]\s+Failed to get socket: (.*)$/)
    let r
    try {
      r = await support.deliverOne(h, [sink], DOMAIN, { timeoutMs: STOCK_CONNECT_TIMEOUT_S * 1000 + 20000 })
    } finally {
      watch.stop()
    }
    const fails = watch.lines
    out('\nAttempts (its "Failed to get socket" lines, time since injection)')
    out(columns([...fails.map((f) => [`+${Math.round(f.ms)} ms`, f.match[1]])], { indent: '  ', align: 'r' }))
    const longest = fails.reduce(
      (best, f, i) => {
        const waited = f.ms - (i ? fails[i - 1].ms : 0)
        return waited > best.waited ? { waited, what: f.match[1] } : best
      },
      { waited: 0, what: '' },
    )
    if (longest.what) out(`  waited ${fmtMs(longest.waited)} for: ${longest.what}`)

    out('\nDelivery')
    if (r.outcome.kind !== 'delivered') {
      out(`  NOT delivered: ${r.outcome.line}`)
      return { ok: false, attempts: fails.length }
    }
    out(deliveryLines(r))
    return { ok: Boolean(r.message), ms: r.ms, attempts: fails.length, waited: longest.waited }
  } finally {
    await scope.close()
  }
}

async function main() {
  support.closeScopesOnExit()
  const scope = support.makeScope('demo')
  // Every wait below is bounded; this only guards against a hang nobody foresaw.
  const watchdog = setTimeout(() => {
    console.error('demo: still running after 100 s, stopping')
    scope.close().then(() => process.exit(1))
  }, 100000)
  watchdog.unref()

  let code = 0
  try {
    out(`Happy Eyeballs for Haraka: demo on loopback (Node ${process.version}, Haraka ${HARAKA_VERSION})`)
    const dns = await scope.own(support.startDns(ZONES))

    heading('1. Test network (DNS answered by a fixture on loopback)')
    out(`DNS server 127.0.0.1:${dns.port} (UDP); every resolver in this demo is pointed at it`)
    out(
      columns([
        [DOMAIN, `MX 10 ${MX}`],
        [MX, `AAAA ${LINK_LOCAL}`, 'link-local: not routable from here'],
        ['', 'AAAA ::1', 'black hole: SYNs dropped, connect() hangs'],
        ['', 'A    127.0.0.1', 'live SMTP sink'],
      ]),
    )

    const plugin = await pluginRun(dns)
    if (!plugin.ok) {
      code = 1
      out('\nThe plugin did not deliver over 127.0.0.1: see above.')
    }
    const stock = await stockRun(dns)
    if (!stock.ok) code = code || 2

    heading('Summary')
    if (plugin.ok && stock.ok) {
      out(
        columns(
          [
            [
              'with happy-eyeballs',
              fmtMs(plugin.ms),
              `${plugin.filtered} address(es) filtered, ${plugin.race.length} raced, ` +
                `winner started at +${plugin.race[plugin.race.length - 1].startMs} ms`,
            ],
            [
              'stock Haraka',
              fmtMs(stock.ms),
              `${stock.attempts} failed attempt(s), waited ${fmtMs(stock.waited)} on the black hole` +
                ` (connect_timeout=${STOCK_CONNECT_TIMEOUT_S})`,
            ],
          ],
          { align: 'lr' },
        ),
      )
      out(
        `plugin ${fmtMs(plugin.ms)} vs stock ${fmtMs(stock.ms)}: ${(stock.ms / plugin.ms).toFixed(1)}x faster`,
      )
    } else {
      out(
        `plugin: ${plugin.ok ? fmtMs(plugin.ms) : 'FAILED'}; stock: ${stock.ok ? fmtMs(stock.ms) : 'FAILED'}`,
      )
    }
  } catch (err) {
    console.error(`demo failed: ${err && err.stack ? err.stack : err}`)
    code = 1
  } finally {
    await scope.close()
    clearTimeout(watchdog)
  }
  process.exit(code)
}

main()
