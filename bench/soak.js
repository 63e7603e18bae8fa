'use strict'

// Soak run: N messages over D domains, each domain with a seeded mix of DNS and connection
// faults, through a real Haraka 3.3.4 with the plugin (and, to compare, through stock Haraka
// 3.3.4 on the same layout). Every message must end delivered, deferred or bounced, and the
// sinks, the DSNs and Haraka's queue dir must agree with the outcomes Haraka ran hooks for. Also measured:
// crashes, Haraka's open fds before/after, its peak RSS, the health cache against its bound,
// and the time from injection to outcome of every message.
//
// Everything runs on loopback: MX addresses are 127.77.x.y (one role per address) and ::1,
// the DNS is the haraka-test-fixtures server on 127.0.0.1, and fe80:: addresses without a
// zone fail before any packet is sent.

const fsp = require('node:fs/promises')
const path = require('node:path')
const { parseArgs } = require('node:util')

const { runSoak, DEFAULTS } = require('./soak/run')
const { summaryText, resultsMarkdown } = require('./soak/report')

const RESULTS_FILE = path.join(__dirname, 'soak-results.md')

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
