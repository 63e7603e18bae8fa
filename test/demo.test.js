'use strict'

// The `npm start` demo, run the way a user runs it (as a child process, --quick so that stock
// Haraka waits 5 s instead of 30 s on the black hole): what it shows, how it exits, and that
// every process it started is gone afterwards.

const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const path = require('node:path')

const { LINK_LOCAL, processTable, isAlive } = require('../support')

const DEMO = path.join(__dirname, '..', 'demo', 'run.js')
const DEMO_LIMIT_MS = 80000

/**
 * Runs the demo, collecting its output and, every 50 ms, every process descended from it.
 * @returns {Promise<{code: number|null, signal: string|null, stdout: string, stderr: string,
 *   seen: Map<number, string|undefined>}>} seen: pid → start time of every descendant observed
 */
function runDemo() {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [DEMO, '--quick'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const seen = new Map()
    const poll = () => {
      const table = processTable()
      const parents = new Set([child.pid])
      let grew = true
      while (grew) {
        grew = false
        for (const [pid, [ppid, start]] of table) {
          if (parents.has(ppid) && !parents.has(pid)) {
            parents.add(pid)
            seen.set(pid, start)
            grew = true
          }
        }
      }
    }
    const poller = setInterval(poll, 50)
    let killer = null
    const limit = setTimeout(() => {
      // The demo stops its own children on SIGTERM; SIGKILL only if that hangs.
      child.kill('SIGTERM')
      killer = setTimeout(() => child.kill('SIGKILL'), 15000)
    }, DEMO_LIMIT_MS)
    child.once('error', (err) => {
      clearInterval(poller)
      clearTimeout(limit)
      reject(err)
    })
    child.once('close', (code, signal) => {
      clearInterval(poller)
      clearTimeout(limit)
      clearTimeout(killer)
      // Processes the demo reported itself, in case one lived between two polls.
      for (const m of stdout.matchAll(/\bpid (\d+)\b/g))
        if (!seen.has(Number(m[1]))) seen.set(Number(m[1]), undefined)
      resolve({ code, signal, stdout, stderr, seen })
    })
  })
}

describe('demo (node demo/run.js --quick)', function () {
  this.timeout(DEMO_LIMIT_MS + 30000)

  let run = null
  let pluginPart = ''
  let stockPart = ''

  before(async function () {
    run = await runDemo()
    const split = run.stdout.indexOf('3. Stock Haraka')
    pluginPart = split < 0 ? run.stdout : run.stdout.slice(0, split)
    stockPart = split < 0 ? '' : run.stdout.slice(split)
  })

  const output = () => `--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`

  it('exits with code 0', function () {
    assert.equal(run.signal, null, output())
    assert.equal(run.code, 0, output())
  })

  it('shows the link-local AAAA as filtered, with the reason link-local', function () {
    assert.match(
      pluginPart,
      new RegExp(`filtered\\s+mx\\.dual\\.example\\s+${LINK_LOCAL}\\s+link-local`),
      output(),
    )
  })

  it('shows the race timeline: ::1 first, then 127.0.0.1 connecting and winning', function () {
    assert.match(pluginPart, /\+0 ms\s+\[::1\]:\d+\s+cancelled after \d+ ms/, output())
    assert.match(pluginPart, /\+\d+ ms\s+127\.0\.0\.1:\d+\s+connected after \d+ ms/, output())
    assert.match(pluginPart, /winner 127\.0\.0\.1\b/, output())
  })

  it('shows a delivery to 127.0.0.1 in the plugin run and in the stock run', function () {
    assert.match(pluginPart, /delivered to mx\.dual\.example ip=127\.0\.0\.1 port=\d+/, output())
    assert.match(stockPart, /delivered to mx\.dual\.example ip=127\.0\.0\.1 port=25\b/, output())
    assert.match(stockPart, /connection timed out to outbound::\{"port":25,"host":"::1"\}/, output())
    assert.match(run.stdout, /plugin \d+ ms vs stock [\d.]+ s/, output())
  })

  it('leaves none of the processes it started running', function () {
    // Haraka twice and the black hole twice, at the least.
    assert.ok(run.seen.size >= 4, `saw only ${run.seen.size} child process(es)\n${output()}`)
    const left = [...run.seen].filter(([pid, start]) => isAlive(pid, start)).map(([pid]) => pid)
    assert.deepEqual(left, [], `still running: ${left.join(', ')}`)
  })
})
