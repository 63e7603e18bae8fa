'use strict'

// The soak report as text: the tables printed after a run and bench/soak-results.md.

const os = require('node:os')

const { mdTable } = require('../../support')
const { SENDER, POOLS, FAULTS, ROLE_OF } = require('./layout')
const { DEFAULTS, LINK_LOCAL_CONNECT } = require('./run')

/** A time in whole ms for a table cell; '–' where there is none. */
const msCell = (v) => (v === null || v === undefined ? '–' : `${Math.round(v)}`)

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
      row.push(msCell(s.median), msCell(s.p95))
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
      row.push(String(s.n), msCell(s.median), msCell(s.p95))
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

- Outcomes are recorded as data by outbound uuid (the uuid from Haraka's \`250 Message Queued\`
  reply): a local plugin listed after happy-eyeballs writes one JSON line from each
  \`delivered\`, \`deferred\` and \`bounce\` hook Haraka runs, with the hook's parameters.
- Sinks are matched by the \`X-Soak-Id\` header; the sink's address must be the \`ip\` Haraka delivered to.
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

From the moment the client starts sending a message to the moment Haraka ran its outcome hook,
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

module.exports = { summaryText, resultsMarkdown }
