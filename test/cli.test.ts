// The haraka-happy-eyeballs command, run in-process against a DNS server on loopback and
// loopback listeners. Every run names the test DNS with --dns: nothing resolves off the machine.

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import dgram from 'node:dgram'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

import fixtures, { type DnsServer, type DnsZone } from 'haraka-test-fixtures'

import type { Family } from '../lib/classify'
import { type CliIo, main } from '../lib/cli'
import type { AddressProbe, ProbeReport } from '../lib/cli/probe'
import { planDomain } from '../lib/cli/plan'
import { type PlanJson, planJson, planText } from '../lib/cli/render'
import { defaultSettings } from '../lib/config'
import { startBlackHole } from './support/harness'

const LINK_LOCAL = 'fe80::d250:99ff:feda:9100'

const ZONES: Record<string, DnsZone> = {
  'seed.test': { mx: [{ preference: 10, exchange: 'mx.seed.test' }] },
  'mx.seed.test': { aaaa: [LINK_LOCAL], a: ['127.0.0.1'] },
  'dual.test': { mx: [{ preference: 10, exchange: 'mx.dual.test' }] },
  'mx.dual.test': { aaaa: ['::1'], a: ['127.0.0.1'] },
  'two.test': {
    mx: [
      { preference: 20, exchange: 'backup.two.test' },
      { preference: 10, exchange: 'main.two.test' },
    ],
  },
  'main.two.test': { a: ['127.0.0.1'] },
  'backup.two.test': { a: ['127.0.0.2'] },
  'v6only.test': { mx: [{ preference: 10, exchange: 'mx.v6only.test' }] },
  'mx.v6only.test': { aaaa: ['fe80::1'] },
  'xn--bcher-kva.test': { a: ['127.0.0.3'] },
  'nullmx.test': { mx: [{ preference: 0, exchange: '.' }] },
  'servfail.test': { rcode: 'SERVFAIL' },
  'silent.test': { drop: true },
  'slow.test': { mx: [{ preference: 10, exchange: 'mx.seed.test' }], delayMs: 600 },
}

/** ANSI "erase to end of line", what a spinner writes after its text. */
const CLEAR_LINE = '\x1b[K'
const hasTerminalControl = (text: string): boolean => text.includes('\r') || text.includes('\x1b')

const LOOPBACK_ALLOWED = '[filter]\nallow[]=127.0.0.0/8\nallow[]=::1/128\n'

// probeJson() gives its object untyped: its shape, as the command prints it.
interface ProbeJson extends Omit<ProbeReport, 'addresses' | 'chosen'> {
  addresses: Array<
    Pick<AddressProbe, 'race' | 'raceStartMs' | 'connected' | 'ms' | 'error'> & {
      address: string
      family: Family
      exchange: string
      preference: number
    }
  >
  chosen: { address: string; family: Family; exchange: string } | null
}

/** What --json prints: the plan, and for probe the probe (null: nothing to connect to). */
interface CommandJson extends PlanJson {
  probe?: ProbeJson | null
}

// The command's stdout is the JSON of CommandJson: typed here, where it is read back.
const parseJson = (stdout: string): CommandJson => JSON.parse(stdout)

/** The probe of a --json probe run; throws when it has none. */
function probeOf(stdout: string): ProbeJson {
  const { probe } = parseJson(stdout)
  if (!probe) throw new Error(`no probe in ${stdout}`)
  return probe
}

/** Captured stdout/stderr for one in-process run. */
function capture(isTTY = false): { io: CliIo; stdout: () => string; stderr: () => string } {
  const out: string[] = []
  const err: string[] = []
  return {
    io: {
      stdout: { write: (s) => out.push(String(s)) },
      stderr: { write: (s) => err.push(String(s)) },
      isTTY,
    },
    stdout: () => out.join(''),
    stderr: () => err.join(''),
  }
}

/** A TCP port with nothing listening on either loopback address (bound and released). */
async function closedPort(): Promise<number> {
  const srv = net.createServer()
  await new Promise<void>((resolve, reject) => srv.once('error', reject).listen(0, '127.0.0.1', resolve))
  const { port } = srv.address() as net.AddressInfo
  await new Promise((resolve) => srv.close(resolve))
  await assertFreeOnV6(port)
  return port
}

/** Binding [::1]:port succeeds only when nothing listens there. */
async function assertFreeOnV6(port: number): Promise<void> {
  const v6 = net.createServer()
  await new Promise<void>((resolve, reject) => v6.once('error', reject).listen(port, '::1', resolve))
  await new Promise((resolve) => v6.close(resolve))
}

/** A UDP port on 127.0.0.1 with no DNS server behind it. */
async function closedUdpPort(): Promise<number> {
  const sock = dgram.createSocket('udp4')
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve))
  const { port } = sock.address()
  await new Promise<void>((resolve) => sock.close(resolve))
  return port
}

describe('haraka-happy-eyeballs command', function () {
  this.timeout(30000)

  let dns: DnsServer
  let tmp: string
  let configDir: string
  let listener: net.Server
  let livePort: number

  before(async function () {
    dns = await fixtures.dns.start(ZONES)
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'he-cli-'))
    configDir = path.join(tmp, 'config')
    fs.mkdirSync(configDir)
    fs.writeFileSync(
      path.join(configDir, 'happy_eyeballs.ini'),
      `${LOOPBACK_ALLOWED}[dns]\ntimeout_ms=1500\n`,
    )
    const server = net.createServer((socket) => socket.destroy())
    listener = server
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve))
    livePort = (server.address() as net.AddressInfo).port
    await assertFreeOnV6(livePort)
  })

  after(async function () {
    if (listener) await new Promise((resolve) => listener.close(resolve))
    if (dns) await dns.close()
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true })
  })

  /** Runs the command; the test's own arguments come last, so they win over the defaults. */
  async function run(
    args: string[],
    { tty = false, config = configDir }: { tty?: boolean; config?: string } = {},
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    const c = capture(tty)
    const code = await main(['--config', config, '--dns', `127.0.0.1:${dns.port}`, ...args], c.io)
    return { code, stdout: c.stdout(), stderr: c.stderr() }
  }

  function writeConfig(name: string, text: string): string {
    const dir = path.join(tmp, name)
    fs.mkdirSync(dir)
    fs.writeFileSync(path.join(dir, 'happy_eyeballs.ini'), text)
    return dir
  }

  describe('plan', function () {
    it('shows the MX host, keeps the loopback A and filters the link-local AAAA as link-local', async function () {
      const r = await run(['plan', 'seed.test'])
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stdout, /^ +10 +mx\.seed\.test: fe80::d250:99ff:feda:9100, 127\.0\.0\.1$/m)
      assert.match(r.stdout, /^connect order \(port 25\):\n {2}1\. 127\.0\.0\.1 +ipv4 +mx\.seed\.test/m)
      assert.match(r.stdout, /^filtered:\n {2}fe80::d250:99ff:feda:9100 of mx\.seed\.test: link-local$/m)
      assert.match(r.stdout, /^outcome: deliver/m)
      assert.doesNotMatch(r.stdout, /^ +\d+\. fe80/m)
    })

    it('--json prints one object with the documented keys and entry shapes', async function () {
      const r = await run(['plan', 'seed.test', '--json'])
      assert.equal(r.code, 0, r.stderr)
      const json = parseJson(r.stdout)
      assert.equal(json.domain, 'seed.test')
      assert.equal(json.outcome, 'deliver')
      assert.equal('status' in json, false)
      assert.equal('reason' in json, false)
      assert.deepEqual(json.kept, [
        { address: '127.0.0.1', family: 'ipv4', exchange: 'mx.seed.test', preference: 10 },
      ])
      assert.deepEqual(json.filtered, [
        { address: LINK_LOCAL, exchange: 'mx.seed.test', reason: 'link-local' },
      ])
      assert.deepEqual(json.dnsErrors, [])
      assert.deepEqual(json.mx, [
        { exchange: 'mx.seed.test', preference: 10, addresses: [LINK_LOCAL, '127.0.0.1'], errors: [] },
      ])
    })

    it('orders MX preference groups lowest first, each address with its own MX host', async function () {
      const json = parseJson((await run(['plan', 'two.test', '--json'])).stdout)
      assert.deepEqual(
        json.kept.map((k) => [k.preference, k.exchange, k.address]),
        [
          [10, 'main.two.test', '127.0.0.1'],
          [20, 'backup.two.test', '127.0.0.2'],
        ],
      )
    })

    it('NXDOMAIN bounces 5.1.2 and exits 1', async function () {
      const r = await run(['plan', 'nx.test'])
      assert.equal(r.code, 1)
      assert.match(r.stdout, /^outcome: bounce 5\.1\.2: NXDOMAIN for nx\.test$/m)
      const json = parseJson((await run(['plan', 'nx.test', '--json'])).stdout)
      assert.equal(json.outcome, 'bounce')
      assert.equal(json.status, '5.1.2')
      assert.match(json.reason!, /NXDOMAIN/)
    })

    it('SERVFAIL defers 4.4.3, never bounces, and exits 1', async function () {
      const r = await run(['plan', 'servfail.test'])
      assert.equal(r.code, 1)
      assert.match(r.stdout, /^outcome: defer 4\.4\.3: DNS lookup failed: .*ESERVFAIL$/m)
      const json = parseJson((await run(['plan', 'servfail.test', '--json'])).stdout)
      assert.equal(json.outcome, 'defer')
      assert.equal(json.status, '4.4.3')
    })

    it('a null MX is reported as such and exits 1', async function () {
      const r = await run(['plan', 'nullmx.test'])
      assert.equal(r.code, 1)
      assert.match(r.stdout, /^outcome: null MX: nullmx\.test accepts no mail/m)
      const json = parseJson((await run(['plan', 'nullmx.test', '--json'])).stdout)
      assert.equal(json.outcome, 'null-mx')
      assert.equal(json.status, '5.1.10')
      assert.deepEqual(json.kept, [])
    })

    it('every address filtered defers 4.4.4 naming the address and why', async function () {
      const r = await run(['plan', 'v6only.test'])
      assert.equal(r.code, 1)
      assert.match(r.stdout, /^outcome: defer 4\.4\.4: .*fe80::1 of mx\.v6only\.test: link-local/m)
    })

    it('looks up an internationalized domain as its A-label, via the implicit MX', async function () {
      const json = parseJson((await run(['plan', 'bücher.test', '--json'])).stdout)
      assert.equal(json.domain, 'xn--bcher-kva.test')
      assert.equal(json.implicitMx, true)
      assert.deepEqual(
        json.kept.map((k) => k.address),
        ['127.0.0.3'],
      )
    })

    it('without the allow list from --config the loopback addresses are filtered, as the plugin would', async function () {
      const dir = writeConfig('no-allow', '[main]\nprefer=ipv6\n')
      const json = parseJson((await run(['plan', 'dual.test', '--json'], { config: dir })).stdout)
      assert.equal(json.outcome, 'defer')
      assert.equal(json.status, '4.4.4')
      assert.deepEqual(json.filtered.map((f) => [f.address, f.reason]).sort(), [
        ['127.0.0.1', 'loopback'],
        ['::1', 'loopback'],
      ])
    })

    it('--config overrides the package defaults key by key (prefer=ipv4 puts the A first)', async function () {
      const dir = writeConfig('prefer-v4', `${LOOPBACK_ALLOWED}[main]\nprefer=ipv4\n`)
      const v4 = parseJson((await run(['plan', 'dual.test', '--json'], { config: dir })).stdout)
      assert.deepEqual(
        v4.kept.map((k) => k.address),
        ['127.0.0.1', '::1'],
      )
      const v6 = parseJson((await run(['plan', 'dual.test', '--json'])).stdout)
      assert.deepEqual(
        v6.kept.map((k) => k.address),
        ['::1', '127.0.0.1'],
      )
    })

    for (const address of ['user@seed.test', '<user@seed.test>', ' <User@SEED.test> ']) {
      it(`takes the mail address ${JSON.stringify(address)} for its domain, as the plan of seed.test`, async function () {
        const r = await run(['plan', address, '--json'])
        assert.equal(r.code, 0, r.stderr)
        const json = parseJson(r.stdout)
        const byDomain = parseJson((await run(['plan', 'seed.test', '--json'])).stdout)
        assert.equal(json.domain, 'seed.test')
        assert.deepEqual(json, byDomain)
      })
    }

    it('looks up the A-label of an internationalized address domain', async function () {
      const json = parseJson((await run(['plan', 'jörg@bücher.test', '--json'])).stdout)
      assert.equal(json.domain, 'xn--bcher-kva.test')
      assert.deepEqual(
        json.kept.map((k) => k.address),
        ['127.0.0.3'],
      )
    })

    it('prints config problems to stderr as warnings and still plans', async function () {
      const dir = writeConfig('bad-keys', `${LOOPBACK_ALLOWED}[main]\nbogus=1\nport=99999\n`)
      const r = await run(['plan', 'seed.test'], { config: dir })
      assert.equal(r.code, 0)
      assert.match(r.stderr, /warning: happy_eyeballs\.ini: unknown key \[main\] bogus ignored/)
      assert.match(r.stderr, /warning: happy_eyeballs\.ini: \[main\] port="?99999"? is not a whole number/)
      assert.doesNotMatch(r.stdout, /warning/)
      assert.match(r.stdout, /^connect order \(port 25\):/m)
    })
  })

  describe('config', function () {
    it('a Haraka install directory given as --config is read through its config/', async function () {
      const dir = path.join(tmp, 'install')
      fs.mkdirSync(path.join(dir, 'config'), { recursive: true })
      fs.writeFileSync(
        path.join(dir, 'config', 'happy_eyeballs.ini'),
        `${LOOPBACK_ALLOWED}[main]\nprefer=ipv4\n`,
      )
      const json = parseJson((await run(['plan', 'dual.test', '--json'], { config: dir })).stdout)
      assert.deepEqual(
        json.kept.map((k) => k.address),
        ['127.0.0.1', '::1'],
      )
    })

    it('HARAKA and HARAKA_TEST_DIR in the environment redirect neither the defaults nor --config', async function () {
      const elsewhere = path.join(tmp, 'elsewhere')
      fs.mkdirSync(path.join(elsewhere, 'config'), { recursive: true })
      fs.writeFileSync(
        path.join(elsewhere, 'config', 'happy_eyeballs.ini'),
        '[main]\nprefer=ipv4\nport=2525\n',
      )
      const saved = { HARAKA: process.env.HARAKA, HARAKA_TEST_DIR: process.env.HARAKA_TEST_DIR }
      process.env.HARAKA = elsewhere
      process.env.HARAKA_TEST_DIR = elsewhere
      let r
      try {
        r = await run(['plan', 'dual.test', '--json'])
      } finally {
        for (const [name, value] of Object.entries(saved)) {
          if (value === undefined) delete process.env[name]
          else process.env[name] = value
        }
      }
      assert.equal(r.code, 0, r.stderr)
      assert.equal(process.env.HARAKA_TEST_DIR, saved.HARAKA_TEST_DIR)
      assert.deepEqual(
        parseJson(r.stdout).kept.map((k) => k.address),
        ['::1', '127.0.0.1'],
      )
      assert.match((await run(['plan', 'dual.test'])).stdout, /^connect order \(port 25\):/m)
    })

    it('reads the ini once: every file watcher it opens is closed, and no temporary link is left', async function () {
      const dir = writeConfig('watched', `${LOOPBACK_ALLOWED}[main]\nprefer=ipv4\n`)
      const watchers: Array<{ path: string; closed: boolean }> = []
      const made: string[] = []
      const { watch, mkdtempSync } = fs
      // The wrappers take every overload alike: they only pass the arguments on.
      fs.watch = function (this: unknown, ...args: unknown[]) {
        const watcher = (watch as (...a: unknown[]) => fs.FSWatcher).apply(this, args)
        const seen = { path: String(args[0]), closed: false }
        watchers.push(seen)
        const close = watcher.close
        watcher.close = function (this: fs.FSWatcher, ...closeArgs: []) {
          seen.closed = true
          return close.apply(this, closeArgs)
        }
        return watcher
      } as typeof fs.watch
      fs.mkdtempSync = function (this: unknown, ...args: unknown[]) {
        const made1 = (mkdtempSync as (...a: unknown[]) => string).apply(this, args)
        made.push(made1)
        return made1
      } as typeof fs.mkdtempSync
      let r
      try {
        r = await run(['plan', 'dual.test', '--json'], { config: dir })
      } finally {
        fs.watch = watch
        fs.mkdtempSync = mkdtempSync
      }
      assert.equal(r.code, 0, r.stderr)
      assert.equal(parseJson(r.stdout).kept[0].address, '127.0.0.1')
      assert.deepEqual(
        watchers.filter((w) => !w.closed),
        [],
      )
      assert.deepEqual(
        made.filter((d) => fs.existsSync(d)),
        [],
      )
      assert.ok(fs.existsSync(path.join(dir, 'happy_eyeballs.ini')))
    })
  })

  describe('DNS unreachable', function () {
    it('a refused DNS server gives one line naming the server and ECONNREFUSED, exit 1', async function () {
      const port = await closedUdpPort()
      const r = await run(['plan', 'seed.test', '--dns', `127.0.0.1:${port}`])
      assert.equal(r.code, 1)
      assert.equal(r.stdout, '')
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
      assert.match(
        r.stderr,
        new RegExp(
          `DNS server 127\\.0\\.0\\.1:${port} unreachable \\(ECONNREFUSED\\) resolving seed\\.test; the plugin would defer 4\\.4\\.3$`,
          'm',
        ),
      )
    })

    it('a DNS server that never answers gives one line naming ETIMEOUT, exit 1', async function () {
      const dir = writeConfig('short-dns', `${LOOPBACK_ALLOWED}[dns]\ntimeout_ms=300\n`)
      const r = await run(['plan', 'silent.test'], { config: dir })
      assert.equal(r.code, 1)
      assert.match(r.stderr, new RegExp(`DNS server 127\\.0\\.0\\.1:${dns.port} unreachable \\(ETIMEOUT\\)`))
    })
  })

  describe('probe', function () {
    it('reports each address, reachability per family and the race winner (::1 refused, 127.0.0.1 live)', async function () {
      const r = await run(['probe', 'dual.test', '--port', String(livePort), '--json', '--timeout', '5000'])
      assert.equal(r.code, 0, r.stderr)
      const probe = probeOf(r.stdout)
      assert.equal(probe.port, livePort)
      const [v6, v4] = probe.addresses
      assert.equal(v6.address, '::1')
      assert.equal(v6.connected, false)
      assert.equal(v6.error, 'connect ECONNREFUSED')
      assert.equal(v6.race, 'failed')
      assert.equal(v4.address, '127.0.0.1')
      assert.equal(v4.connected, true)
      assert.equal(typeof v4.ms, 'number')
      assert.equal(v4.race, 'connected')
      assert.deepEqual(probe.families, { ipv4: 'reachable', ipv6: 'unreachable' })
      assert.deepEqual(probe.chosen, { address: '127.0.0.1', family: 'ipv4', exchange: 'mx.dual.test' })
    })

    it('says the same in text', async function () {
      const r = await run(['probe', 'dual.test', '--port', String(livePort), '--timeout', '5000'])
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stdout, /^ +::1 +ipv6 +connect ECONNREFUSED after \d+ ms +race: failed/m)
      assert.match(r.stdout, /^ +127\.0\.0\.1 +ipv4 +connected in \d+ ms +race: winner/m)
      assert.match(r.stdout, /^ipv4: reachable$/m)
      assert.match(r.stdout, /^ipv6: unreachable$/m)
      assert.match(r.stdout, /^chosen: 127\.0\.0\.1 \(mx\.dual\.test, ipv4\)/m)
    })

    it('probes the [main] port of --config when --port is absent', async function () {
      const dir = writeConfig('port', `${LOOPBACK_ALLOWED}[main]\nport=${livePort}\n`)
      const r = await run(['probe', 'dual.test', '--json', '--timeout', '5000'], { config: dir })
      assert.equal(r.code, 0, r.stderr)
      const probe = probeOf(r.stdout)
      assert.equal(probe.port, livePort)
      assert.equal(probe.chosen!.address, '127.0.0.1')
    })

    it('also connects to the addresses the race never started and marks them not tried', async function () {
      const r = await run(['probe', 'two.test', '--port', String(livePort), '--json', '--timeout', '5000'])
      assert.equal(r.code, 0, r.stderr)
      const probe = probeOf(r.stdout)
      const byAddress = Object.fromEntries(probe.addresses.map((a) => [a.address, a]))
      assert.equal(byAddress['127.0.0.1'].race, 'connected')
      assert.equal(byAddress['127.0.0.2'].race, 'not tried')
      assert.equal(byAddress['127.0.0.2'].connected, false)
      assert.equal(byAddress['127.0.0.2'].error, 'connect ECONNREFUSED')
      assert.deepEqual(probe.families, { ipv4: 'reachable', ipv6: 'none' })
    })

    it('an address the race cancelled gets its own answer, bounded by --timeout (black hole on ::1)', async function () {
      const hole = await startBlackHole({ host: '::1' })
      const live = net.createServer((socket) => socket.destroy())
      try {
        await new Promise<void>((resolve, reject) =>
          live.once('error', reject).listen(hole.port, '127.0.0.1', resolve),
        )
        const r = await run(['probe', 'dual.test', '--port', String(hole.port), '--json', '--timeout', '800'])
        assert.equal(r.code, 0, r.stderr)
        const probe = probeOf(r.stdout)
        const [v6, v4] = probe.addresses
        assert.equal(v6.race, 'cancelled')
        assert.equal(v6.connected, false)
        assert.equal(v6.error, 'no answer in 800 ms')
        assert.equal(v4.race, 'connected')
        assert.equal(probe.chosen!.address, '127.0.0.1')
        assert.deepEqual(probe.families, { ipv4: 'reachable', ipv6: 'unreachable' })
      } finally {
        await new Promise((resolve) => live.close(resolve))
        await hole.close()
      }
    })

    it('nothing listening: every address fails, chosen is none with the 4.4.1 reason, exit 1', async function () {
      const port = await closedPort()
      const r = await run(['probe', 'dual.test', '--port', String(port), '--json', '--timeout', '5000'])
      assert.equal(r.code, 1)
      const probe = probeOf(r.stdout)
      assert.equal(probe.chosen, null)
      assert.deepEqual(
        probe.addresses.map((a) => [a.address, a.connected, a.error]),
        [
          ['::1', false, 'connect ECONNREFUSED'],
          ['127.0.0.1', false, 'connect ECONNREFUSED'],
        ],
      )
      assert.deepEqual(probe.families, { ipv4: 'unreachable', ipv6: 'unreachable' })
      assert.match(probe.failure!, /^no MX address of dual\.test answered: ::1: connect ECONNREFUSED; /)
      const text = await run(['probe', 'dual.test', '--port', String(port), '--timeout', '5000'])
      assert.equal(text.code, 1)
      assert.match(text.stdout, /^chosen: none; the plugin would defer 4\.4\.1: /m)
    })

    it('a domain without a deliverable plan connects to nothing and exits 1', async function () {
      const r = await run(['probe', 'nx.test', '--json'])
      assert.equal(r.code, 1)
      const json = parseJson(r.stdout)
      assert.equal(json.outcome, 'bounce')
      assert.equal(json.probe, null)
    })
  })

  describe('usage', function () {
    const cases: Array<[string[], RegExp]> = [
      [[], /missing command/],
      [['frob', 'seed.test'], /unknown command 'frob'/],
      [['plan', 'seed.test', '--frob'], /unknown option --frob/],
      [['plan', 'seed.test', '-x'], /unknown option -x/],
      [['plan'], /missing domain/],
      [['probe'], /missing domain/],
      [['plan', 'exa mple..com'], /invalid domain 'exa mple\.\.com'/],
      [['plan', 'a..b.test'], /invalid domain/],
      [['plan', '127.0.0.1'], /invalid domain/],
      [['plan', 'seed.test', 'more.test'], /unexpected argument 'more\.test'/],
      [
        ['plan', 'user@exa mple.test'],
        /invalid address 'user@exa mple\.test': unexpected " " at character 9/,
      ],
      [['plan', 'a@b@c.test'], /invalid address 'a@b@c\.test': unexpected "@" at character 4/],
      [['probe', '<user@seed.test'], /invalid address '<user@seed\.test': incomplete address/],
      [['plan', 'user@'], /invalid address 'user@': incomplete address/],
      [['plan', '<>'], /invalid address '<>': it has no domain/],
      [
        ['plan', 'user@[127.0.0.1]'],
        /invalid address 'user@\[127\.0\.0\.1\]': \[127\.0\.0\.1\] is an address literal/,
      ],
      [['plan', 'user@127.0.0.1'], /invalid address 'user@127\.0\.0\.1': invalid domain '127\.0\.0\.1'/],
      [
        ['plan', `${'u'.repeat(65)}@seed.test`],
        /invalid address 'u+@seed\.test': RFC-5321 local-part exceeds 64 octets/,
      ],

      [['plan', 'seed.test', '--dns', '1.2.3'], /bad --dns '1\.2\.3'/],
      [['plan', 'seed.test', '--dns', 'dns.example:53'], /bad --dns 'dns\.example:53'/],
      [['plan', 'seed.test', '--dns', '127.0.0.1:70000'], /bad --dns/],
      [['plan', 'seed.test', '--port', '0'], /bad --port '0'/],
      [['plan', 'seed.test', '--port', 'smtp'], /bad --port 'smtp'/],
      [['plan', 'seed.test', '--port', '65536'], /bad --port '65536'/],
      [['plan', 'seed.test', '--port'], /option --port needs a value/],
      [['plan', 'seed.test', '--timeout', '-5'], /option --timeout needs a value|bad --timeout/],
      [['plan', 'seed.test', '--timeout', 'soon'], /bad --timeout 'soon'/],
      [['plan', 'seed.test', '--json=yes'], /option --json takes no value/],
    ]
    for (const [args, message] of cases) {
      it(`${JSON.stringify(args)} → exit 2 with one line matching ${message}`, async function () {
        const r = await run(args)
        assert.equal(r.code, 2)
        assert.equal(r.stdout, '')
        assert.equal(r.stderr.split('\n').length, 2, r.stderr)
        assert.match(r.stderr, /^haraka-happy-eyeballs: /)
        assert.match(r.stderr, message)
      })
    }

    it('--config naming no directory is a usage error', async function () {
      const r = await run(['plan', 'seed.test'], { config: path.join(tmp, 'nowhere') })
      assert.equal(r.code, 2)
      assert.match(r.stderr, /--config '.*nowhere' is not a directory/)
    })

    for (const flag of ['-h', '--help']) {
      it(`${flag} prints the usage with every command and option on stdout, exit 0`, async function () {
        const r = await run([flag])
        assert.equal(r.code, 0)
        assert.equal(r.stderr, '')
        for (const word of [
          'plan <domain>',
          'probe <domain>',
          '--config DIR',
          '--dns HOST:PORT',
          '--port N',
        ]) {
          assert.ok(r.stdout.includes(word), word)
        }
        for (const word of ['--json', '--timeout MS', '-h, --help']) assert.ok(r.stdout.includes(word), word)
      })
    }
  })

  describe('progress', function () {
    it('a slow DNS answer writes a plain progress line to stderr, never to stdout', async function () {
      const r = await run(['plan', 'slow.test'])
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stderr, /^resolving slow\.test MX…$/m)
      assert.equal(hasTerminalControl(r.stderr), false, JSON.stringify(r.stderr))
      assert.doesNotMatch(r.stdout, /resolving|…/)
      assert.equal(hasTerminalControl(r.stdout), false)
      assert.match(r.stdout, /^outcome: deliver/m)
    })

    it('on a terminal it is a spinner, wiped before the result', async function () {
      const r = await run(['plan', 'slow.test', '--json'], { tty: true })
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stderr, /\r. resolving slow\.test MX…/)
      assert.ok(r.stderr.includes(`resolving slow.test MX…${CLEAR_LINE}`), JSON.stringify(r.stderr))
      assert.ok(r.stderr.endsWith(`\r${CLEAR_LINE}`), JSON.stringify(r.stderr))
      assert.doesNotMatch(r.stdout, /resolving/)
      assert.equal(hasTerminalControl(r.stdout), false)
      assert.equal(parseJson(r.stdout).outcome, 'deliver')
    })
  })

  describe('the installed bin', function () {
    it('node dist/cli.js --help runs and prints the usage', async function () {
      const bin = path.join(__dirname, '..', 'dist', 'cli.js')
      assert.match(fs.readFileSync(bin, 'utf8'), /^#!\/usr\/bin\/env node\n/)
      const { code, stdout } = await new Promise<{ code: number | string; stdout: string }>((resolve) => {
        execFile(process.execPath, [bin, '--help'], { timeout: 20000 }, (err, out) =>
          resolve({ code: err ? (err.code ?? 1) : 0, stdout: out }),
        )
      })
      assert.equal(code, 0)
      assert.match(stdout, /^Usage: haraka-happy-eyeballs <command> <domain>/)
    })

    it('node dist/cli.js plan <address> prints the plan and exits by itself', async function () {
      const bin = path.join(__dirname, '..', 'dist', 'cli.js')
      const args = [bin, 'plan', '<user@seed.test>', '--config', configDir, '--dns', `127.0.0.1:${dns.port}`]
      const { code, stdout } = await new Promise<{ code: number | string; stdout: string }>((resolve) => {
        execFile(process.execPath, args, { timeout: 20000 }, (err, out) =>
          resolve({ code: err ? (err.code ?? 1) : 0, stdout: out }),
        )
      })
      assert.equal(code, 0)
      assert.match(stdout, /^seed\.test: MX hosts$/m)
      assert.match(stdout, /^outcome: deliver/m)
    })
  })
})

describe('cli plan: this host without IPv6 connectivity', () => {
  it('asks no AAAA, and the text and JSON say the family was left out and why', async () => {
    const asked: string[] = []
    const dns = {
      resolveMx: (n: string) => (
        asked.push(`MX ${n}`),
        Promise.resolve([{ exchange: `mx.${n}`, priority: 10 }])
      ),
      resolve6: (n: string) => (asked.push(`AAAA ${n}`), Promise.resolve(['2001:4860::25'])),
      resolve4: (n: string) => (asked.push(`A ${n}`), Promise.resolve(['8.8.4.25'])),
    }
    const interfaces = () =>
      ({
        lo: [
          { address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '', internal: true, cidr: null },
        ],
        eth0: [
          { address: '10.0.0.5', netmask: '255.0.0.0', family: 'IPv4', mac: '', internal: false, cidr: null },
        ],
      }) as NodeJS.Dict<os.NetworkInterfaceInfo[]>
    const record = await planDomain('dest.test', defaultSettings(), dns, () => 0.5, interfaces)
    assert.deepEqual(asked, ['MX dest.test', 'A mx.dest.test'])
    assert.match(
      planText(record, 25),
      /^this host: AAAA not queried \(no IPv6 connectivity: no global IPv6 address\)$/m,
    )
    assert.deepEqual(planJson(record).notQueried, [
      { family: 'ipv6', reason: 'no IPv6 connectivity: no global IPv6 address' },
    ])
  })
})
