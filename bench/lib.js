'use strict'

// Helpers shared by demo/run.js and bench/run.js: cleanup that also runs on Ctrl-C, the
// port 25 stand-ins stock Haraka needs, timed delivery of one message, reading the plugin's
// log line back into its parts, and plain-text tables.

const fs = require('node:fs')

const harness = require('../test/e2e/harness')

const { sendMail, queuedUuid, waitForOutcome } = harness

/**
 * The seed report's link-local AAAA. A connect() to it fails with EINVAL before any packet on
 * Node 20, and on Node 22+ goes out of an interface with a link-local address, if there is
 * one, and waits for its timeout (test/support/link-local.js).
 */
const LINK_LOCAL = 'fe80::d250:99ff:feda:9100'

// ---------------------------------------------------------------------------------------
// Cleanup

const openScopes = new Set()

/**
 * A list of undo steps run in reverse order by close(), each one even if an earlier one
 * throws. Open scopes are also closed when the process gets SIGINT or SIGTERM.
 */
function makeScope(name = 'scope') {
  const steps = []
  let closing = null
  const scope = {
    name,
    /** Registers fn to run on close() and returns `value` (handy inline). */
    defer(fn, value) {
      steps.push(fn)
      return value
    },
    close() {
      if (!closing) {
        closing = (async () => {
          while (steps.length) {
            const step = steps.pop()
            try {
              await step()
            } catch (err) {
              console.error(`${name}: cleanup step failed: ${err && err.message}`)
            }
          }
          openScopes.delete(scope)
        })()
      }
      return closing
    },
  }
  openScopes.add(scope)
  return scope
}

let handlersInstalled = false

/**
 * On SIGINT/SIGTERM, an uncaught error, or a closed stdout (`| head`): close every open scope
 * (stops Haraka, sinks, black holes, removes temp dirs), then exit. Without this, a Haraka
 * child would outlive its parent.
 */
function closeScopesOnExit() {
  if (handlersInstalled) return
  handlersInstalled = true
  let stopping = false
  const stopAll = (why, code) => {
    if (stopping) return
    stopping = true
    try {
      process.stderr.write(`\n${why}: stopping everything this run started ...\n`)
    } catch {
      // stderr may be gone as well
    }
    // A hard stop if a cleanup step hangs; Haraka's own stop() escalates to SIGKILL after 5 s.
    setTimeout(() => process.exit(code), 15000).unref()
    Promise.allSettled([...openScopes].map((s) => s.close())).then(() => process.exit(code))
  }
  process.on('SIGINT', () => stopAll('SIGINT', 130))
  process.on('SIGTERM', () => stopAll('SIGTERM', 143))
  process.on('SIGHUP', () => stopAll('SIGHUP', 129))
  process.on('uncaughtException', (err) => stopAll(`uncaught error: ${err && err.stack}`, 1))
  process.on('unhandledRejection', (err) => stopAll(`unhandled rejection: ${err && err.stack}`, 1))
  process.stdout.on('error', (err) => stopAll(`stdout: ${err.code || err.message}`, 1))
}

// ---------------------------------------------------------------------------------------
// Loopback stand-ins

const PORT25_HINT =
  'stock Haraka always connects to port 25 of an MX host, so this needs 127.0.0.1:25 and [::1]:25 ' +
  'free and bindable (root, or net.ipv4.ip_unprivileged_port_start<=25)'

function explainPort(err, host, port) {
  if (port !== 25) return err
  return new Error(
    `cannot listen on ${host.includes(':') ? `[${host}]` : host}:25: ${err.message}\n${PORT25_HINT}`,
    {
      cause: err,
    },
  )
}

/** A recording SMTP sink (harness.startSink) closed with the scope. */
async function sink(scope, host, port = 0) {
  try {
    const s = await harness.startSink({ host, port })
    return scope.defer(() => s.close(), s)
  } catch (err) {
    throw explainPort(err, host, port)
  }
}

/** A loopback black hole (harness.startBlackHole) closed with the scope. */
async function blackHole(scope, host, port = 0) {
  try {
    const h = await harness.startBlackHole({ host, port })
    return scope.defer(() => h.close(), h)
  } catch (err) {
    throw explainPort(err, host, port)
  }
}

/** Fails early, with the reason, when any of the given port 25 listeners cannot be made. */
async function checkPort25(hosts) {
  const scope = makeScope('port 25 check')
  try {
    for (const host of hosts) await sink(scope, host, 25)
  } finally {
    await scope.close()
  }
}

/**
 * Waits until every given host's port 25 can be listened on (another run may be holding it
 * for a moment), checking every 2 s; throws the reason after timeoutMs.
 */
async function waitForPort25(hosts, timeoutMs, onWait = () => {}) {
  const deadline = Date.now() + timeoutMs
  for (let first = true; ; first = false) {
    try {
      return await checkPort25(hosts)
    } catch (err) {
      if (!/in use/i.test(err.message) || Date.now() > deadline) throw err
      if (first) onWait(err)
      await new Promise((resolve) => setTimeout(resolve, 2000))
    }
  }
}

/** A real Haraka (harness.startHaraka) stopped with the scope; its temp dir and queue go too. */
async function haraka(scope, opts) {
  const h = await harness.startHaraka(opts)
  return scope.defer(() => h.stop(), h)
}

/** The happy_eyeballs.ini the demo and the bench run with (the harness adds `[dns] servers`). */
function pluginIni(port) {
  return `[main]\nport=${port}\n\n[filter]\nallow[]=127.0.0.0/8\nallow[]=::1/128\n`
}

// ---------------------------------------------------------------------------------------
// Delivery

let seq = 0

/**
 * Submits one message and waits until Haraka logs its outcome. A unique recipient finds the
 * message among the sinks; `ms` runs from just before the submission to the sink taking it.
 * @returns {Promise<{ms: number, t0: number, from: number, uuid?: string, outcome: object,
 *   message?: object, log: () => string}>}
 */
async function deliverOne(h, sinks, domain, { timeoutMs = 60000, local = 'rcpt' } = {}) {
  const to = `${local}-${++seq}@${domain}`
  const from = h.logLength()
  const t0 = performance.now()
  const info = await sendMail({ port: h.port, to })
  const uuid = queuedUuid(info)
  const outcome = await waitForOutcome(h, timeoutMs, { from, uuid })
  const message = sinks.flatMap((s) => s.messages).find((m) => m.to.includes(to))
  return {
    ms: message ? message.receivedAt - t0 : NaN,
    t0,
    from,
    uuid,
    outcome,
    message,
    log: () => h.log().slice(from),
  }
}

/** Like deliverOne, but anything other than a delivery that reached a sink throws. */
async function mustDeliver(h, sinks, domain, opts) {
  const r = await deliverOne(h, sinks, domain, opts)
  if (r.outcome.kind !== 'delivered') {
    throw new Error(`message to ${domain} was ${r.outcome.kind}, not delivered: ${r.outcome.line}`)
  }
  if (!r.message) throw new Error(`Haraka logged a delivery to ${domain}, but no sink has the message`)
  return r
}

/**
 * Records when each new log line matching `re` appears (polled every 10 ms), relative to t0.
 * stop() ends the polling and returns the lines.
 */
function watchLog(h, re, { from = h.logLength(), t0 = performance.now() } = {}) {
  const lines = []
  let offset = from
  const scan = () => {
    const text = h.log()
    const end = text.lastIndexOf('\n') + 1
    if (end <= offset) return
    for (const line of text.slice(offset, end).split('\n')) {
      const m = re.exec(line)
      if (m) lines.push({ ms: performance.now() - t0, line, match: m })
    }
    offset = end
  }
  const timer = setInterval(scan, 10)
  return {
    lines,
    stop() {
      clearInterval(timer)
      scan()
      return lines
    },
  }
}

// ---------------------------------------------------------------------------------------
// The plugin's log line

const PLUGIN_LINE_RE = /happy-eyeballs: (plan for \S+: .*)$/m

/**
 * Splits `plan for D: try A, B; filtered X of H: why; ...; race +0ms T outcome; ...; winner W`
 * (lib/route.ts, lib/plan.ts, lib/race.ts) back into its parts.
 */
function parsePluginLine(text) {
  const m = PLUGIN_LINE_RE.exec(text)
  if (!m) return null
  const out = { line: m[1], domain: '', kept: [], filtered: [], race: [], winner: '', other: [] }
  let section = ''
  for (const piece of m[1].split('; ')) {
    let p
    if ((p = /^plan for (\S+): try (.*)$/.exec(piece))) {
      out.domain = p[1]
      if (p[2] !== 'none') {
        out.kept = p[2].split(', ').map((k) => {
          const [exchange, address] = k.split(' ')
          return { exchange, address }
        })
      }
      section = 'plan'
    } else if (
      (p = /^(?:(filtered) )?(\S+) of (\S+): (.*)$/.exec(piece)) &&
      (p[1] || section === 'filtered')
    ) {
      out.filtered.push({ address: p[2], exchange: p[3], reason: p[4] })
      section = 'filtered'
    } else if ((p = /^(?:(race) )?\+(\d+)ms (\S+) (.*)$/.exec(piece)) && (p[1] || section === 'race')) {
      out.race.push({ startMs: Number(p[2]), target: p[3], result: p[4] })
      section = 'race'
    } else if ((p = /^winner (\S+)$/.exec(piece))) {
      out.winner = p[1]
      section = 'winner'
    } else {
      out.other.push(piece)
      section = 'other'
    }
  }
  return out
}

// ---------------------------------------------------------------------------------------
// Numbers and text

function median(values) {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (!v.length) return NaN
  const mid = Math.floor(v.length / 2)
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2
}

/** 412 ms, 30.41 s */
function fmtMs(ms) {
  if (!Number.isFinite(ms)) return 'n/a'
  if (ms < 1000) return `${Math.round(ms)} ms`
  return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`
}

/** 535.2 s → '8 min 55 s'; shorter spans as fmtMs. */
function fmtDuration(ms) {
  if (!(ms >= 60000)) return fmtMs(ms)
  const s = Math.round(ms / 1000)
  return `${Math.floor(s / 60)} min ${s % 60} s`
}

/** 1 234 567 → '1,234,567' */
function fmtInt(n) {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a'
}

/**
 * Aligned plain-text columns. `align` is a string of 'l'/'r' per column.
 * @param {string[][]} rows
 */
function columns(rows, { align = '', indent = '', gap = '  ' } = {}) {
  const widths = []
  for (const row of rows)
    row.forEach((cell, i) => (widths[i] = Math.max(widths[i] || 0, String(cell).length)))
  return rows
    .map((row) =>
      (
        indent +
        row
          .map((cell, i) => {
            const s = String(cell)
            if (i === row.length - 1 && align[i] !== 'r') return s
            return align[i] === 'r' ? s.padStart(widths[i]) : s.padEnd(widths[i])
          })
          .join(gap)
      ).trimEnd(),
    )
    .join('\n')
}

/** A kB value from /proc/<pid>/status (VmHWM, VmRSS), or NaN where there is no /proc. */
function procStatusKb(pid, key) {
  try {
    const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)
    return m ? Number(m[1]) : NaN
  } catch {
    return NaN
  }
}

/** User + system CPU time a process has used so far, in ms (Linux /proc), or NaN. */
function procCpuMs(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // utime and stime, fields 14 and 15 of stat(5), in clock ticks; Linux reports them at 100 Hz.
    return (Number(fields[11]) + Number(fields[12])) * 10
  } catch {
    return NaN
  }
}

module.exports = {
  LINK_LOCAL,
  PORT25_HINT,
  makeScope,
  closeScopesOnExit,
  sink,
  blackHole,
  checkPort25,
  waitForPort25,
  haraka,
  pluginIni,
  deliverOne,
  mustDeliver,
  watchLog,
  parsePluginLine,
  median,
  fmtMs,
  fmtDuration,
  fmtInt,
  columns,
  procStatusKb,
  procCpuMs,
}
