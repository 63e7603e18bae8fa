import assert from 'node:assert/strict'
import net from 'node:net'
import path from 'node:path'

import { EventEmitter } from 'node:events'

import { type PoolSocket, ClientPoolBridge, UNCLAIMED_LIMIT, detectPoolShape } from '../lib/client-pool'
import type { ConnectOutcome } from '../lib/health'
import { type ConnectAttempt, MessageConnects } from '../lib/connects'
import { Haraka30Delivery } from '../lib/haraka30'
import {
  type HarakaOutbound,
  type HarakaRequire,
  type MxClass,
  bindHarakaOutbound,
  compactlyLogged,
  describeEntry,
} from '../lib/haraka-outbound'
import { PlannedEntries } from '../lib/planned'
import { type RaceTarget, raceConnect } from '../lib/race'
import { freePort } from './support/harness'

const HARAKA = {
  '3.3.4': path.dirname(require.resolve('Haraka/package.json')),
  '3.0.3': path.dirname(require.resolve('haraka30/package.json')),
}
type Version = keyof typeof HARAKA
// Haraka ships no types: its modules are read as the parts of them these tests use (below).
const harakaRequire =
  (dir: string): HarakaRequire =>
  (name: string) =>
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    require(path.join(dir, name)) as unknown

/** What Haraka's client pool calls back with: an error, or a socket. */
type PoolCallback = (err: unknown, socket: HandedSocket | null) => void

/**
 * outbound/client_pool: get_client(mx, cb) on 3.1+, get_client(port, host, localAddr, isUnix,
 * cb) on 3.0.x; the tests call the one their version has.
 */
interface HarakaPool {
  get_client: (...args: unknown[]) => void
}

/** A socket Haraka's pool handed over: a pool socket that can also write and STARTTLS. */
type HandedSocket = PoolSocket & { write: (data: string) => boolean; upgrade?: unknown }

/** An MX entry as hmail.js hands it to the pool. */
interface PoolMx {
  exchange: string
  port: number
  bind?: string
}

/** An SMTP-ish peer that counts its connections. */
type Greeter = net.Server & { accepted: number }

// Every server here listens on TCP, so its address is an AddressInfo.
const portOf = (server: net.Server): number => (server.address() as net.AddressInfo).port

// An SMTP-ish peer that greets at once and counts connections.
async function greeter(host = '127.0.0.1'): Promise<Greeter> {
  const server = net.createServer((s) => {
    server.accepted++
    s.on('error', () => {})
    s.write('220 greeter ready\r\n')
  }) as Greeter
  server.accepted = 0
  await new Promise<void>((resolve) => server.listen({ host, port: 0 }, resolve))
  return server
}

const target = (address: string, port: number): RaceTarget => ({
  address,
  family: address.includes(':') ? 'ipv6' : 'ipv4',
  exchange: 'mx.pool.test',
  preference: 10,
  port,
})

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

describe('client pool shape detection', function () {
  it("reads Haraka 3.3.4's get_client(mx, cb) as the mx shape", function () {
    assert.equal(detectPoolShape(harakaRequire(HARAKA['3.3.4'])('outbound/client_pool')), 'mx')
  })
  it("reads Haraka 3.0.3's get_client(port, host, ...) as the legacy shape", function () {
    assert.equal(detectPoolShape(harakaRequire(HARAKA['3.0.3'])('outbound/client_pool')), 'legacy')
  })
  it('anything else is unknown', function () {
    assert.equal(detectPoolShape(undefined), 'unknown')
    assert.equal(detectPoolShape({}), 'unknown')
    assert.equal(detectPoolShape({ get_client: (_socketOpts: unknown, cb: unknown) => cb }), 'unknown')
  })
  it("reports an outbound.ini inet_prefer that would regroup the plugin's order", function () {
    const withPrefer = (value: string) =>
      bindHarakaOutbound(
        (name: string) => {
          if (name === 'outbound/config') return { cfg: { connect_timeout: 30, inet_prefer: value } }
          if (name === 'outbound/client_pool') return { get_client() {} }
          return harakaRequire(HARAKA['3.3.4'])(name)
        },
        { onOutcome() {}, log() {} },
      )
    assert.equal(withPrefer('v4').inetPrefer, 'v4')
    assert.equal(withPrefer('default').inetPrefer, undefined)
  })

  it('an unknown pool leaves racing off with a reason, and keeps HarakaMx', function () {
    const out = bindHarakaOutbound(
      (name: string) => {
        if (name === 'outbound/client_pool') return { get_client() {} }
        return harakaRequire(HARAKA['3.3.4'])(name)
      },
      { onOutcome() {}, log() {} },
    )
    assert.equal(out.bridge, undefined)
    assert.match(out.raceUnavailable ?? '', /unknown shape/)
    assert.equal(typeof out.HarakaMx, 'function')
  })

  it("entries are Haraka's own HarakaMx, JSON-encoded as one short string each", function () {
    const netUtils = harakaRequire(HARAKA['3.3.4'])('outbound') as { net_utils: { HarakaMx: MxClass } }
    const HarakaMx = netUtils.net_utils.HarakaMx
    const out = bindHarakaOutbound(harakaRequire(HARAKA['3.3.4']), { onOutcome() {}, log() {} })
    const Entry = out.HarakaMx as MxClass
    const v6 = new Entry({ exchange: '2001:db8::1', priority: 0, port: 25, from_dns: 'mx.example.test' })
    const v4 = new Entry({
      exchange: '192.0.2.1',
      priority: 1,
      port: 2525,
      bind: '192.0.2.7',
      from_dns: 'mx.example.test',
    })
    assert.ok(v6 instanceof HarakaMx)
    // Haraka's get_mx_respond wraps each entry again: the very object must come back.
    assert.equal(new HarakaMx(v6), v6)
    assert.equal((v4 as { port?: number }).port, 2525)
    // What Haraka logs for a get_mx answer: the JSON of a copy of the list.
    assert.equal(
      JSON.stringify({ ...[v6, v4] }),
      '{"0":"[2001:db8::1]:25 (mx.example.test)","1":"192.0.2.1:2525 from 192.0.2.7 (mx.example.test)"}',
    )
    assert.equal(compactlyLogged(HarakaMx), Entry, 'one class per Haraka class')
    assert.equal(describeEntry({ exchange: 'mx.example.test' }), 'mx.example.test:25 (mx.example.test)')
  })
})

for (const version of Object.keys(HARAKA) as Version[]) {
  describe(`client pool bridge on Haraka ${version}`, function () {
    const req = harakaRequire(HARAKA[version])
    const pool = req('outbound/client_pool') as HarakaPool
    const original = pool.get_client
    let out: HarakaOutbound
    let server: Greeter
    let outcomes: Array<[string, ConnectOutcome]>
    // Like hmail.js, listeners go on inside the callback, before any data may flow.
    const getClient = (mx: PoolMx) =>
      new Promise<{ err: unknown; socket: HandedSocket; firstLine: Promise<string> }>((resolve) => {
        const cb: PoolCallback = (err, socket) => {
          const firstLine = (socket &&
            new Promise<string>((r) => socket.once('line', (l: unknown) => r(String(l))))) as Promise<string>
          resolve({ err, socket: socket as HandedSocket, firstLine })
        }
        if (version === '3.0.3') pool.get_client(mx.port, mx.exchange, mx.bind, false, cb)
        else pool.get_client(mx, cb)
      })

    beforeEach(async function () {
      outcomes = []
      out = bindHarakaOutbound(req, { onOutcome: (t, o) => void outcomes.push([t.address, o]), log() {} })
      server = await greeter()
    })

    after(function () {
      // bindHarakaOutbound installs the 3.0.x delivery adapter on Haraka's own HMailItem.
      Haraka30Delivery.installedOn(req('outbound/hmail'))?.uninstall()
      // Loading Haraka 3.0's outbound starts its retry queue's interval timer; a Haraka
      // process owns it, this test process must stop it.
      const queue = req('outbound/queue') as { temp_fail_queue?: { interval_timer?: NodeJS.Timeout } }
      if (queue.temp_fail_queue?.interval_timer) clearInterval(queue.temp_fail_queue.interval_timer)
    })

    afterEach(async function () {
      out.bridge?.uninstall()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    })

    it('wraps get_client, and uninstall puts the original back', function () {
      assert.ok(out.bridge, out.raceUnavailable)
      assert.notEqual(pool.get_client, original)
      out.bridge!.uninstall()
      assert.equal(pool.get_client, original)
    })

    it('hands the raced socket to Haraka with no second handshake and no greeting byte lost', async function () {
      const port = portOf(server)
      const t = target('127.0.0.1', port)
      const race = await raceConnect([t], {
        attemptDelayMs: 250,
        groupDelayMs: 2000,
        deadlineMs: 2000,
        connect: (x) => out.bridge!.connect(x),
      })
      out.bridge!.hold(t, race.winner!.socket)
      await delay(100) // the greeting arrives while the socket is held
      const { err, socket, firstLine } = await getClient({ exchange: '127.0.0.1', port })
      assert.equal(err, null)
      assert.equal(socket, race.winner!.socket)
      assert.equal(await firstLine, '220 greeter ready\r\n')
      assert.equal(server.accepted, 1)
      assert.equal(typeof socket.write, 'function')
      assert.equal(typeof socket.upgrade, 'function', 'the socket cannot STARTTLS')
      socket.destroy()
    })

    it('a second plugin instance reuses the installed bridge: one wrapper, its raced socket claimed', async function () {
      const again = bindHarakaOutbound(req, { onOutcome() {}, log() {} })
      assert.equal(again.bridge, out.bridge)
      const port = portOf(server)
      const t = target('127.0.0.1', port)
      const race = await raceConnect([t], {
        attemptDelayMs: 250,
        groupDelayMs: 2000,
        deadlineMs: 2000,
        connect: (x) => again.bridge!.connect(x),
      })
      again.bridge!.hold(t, race.winner!.socket)
      const { socket } = await getClient({ exchange: '127.0.0.1', port })
      assert.equal(socket, race.winner!.socket)
      assert.equal(server.accepted, 1)
      out.bridge!.uninstall()
      assert.equal(pool.get_client, original, 'more than one layer of wrapping')
      socket.destroy()
    })

    if (version === '3.3.4') {
      it("writes the race's attempts and Haraka's hand-over to the message's record", async function () {
        const planned = new PlannedEntries()
        out.bridge!.uninstall()
        out = bindHarakaOutbound(req, { onOutcome() {}, log() {}, planned })
        const port = portOf(server)
        const dead = await freePort('127.0.0.1')
        const targets = [target('127.0.0.1', dead), target('127.0.0.1', port)]
        const record = new MessageConnects('pool.test')
        const racer = out.bridge!.racerFor(record)
        const race = await raceConnect(targets, {
          attemptDelayMs: 250,
          groupDelayMs: 2000,
          deadlineMs: 2000,
          connect: (x) => racer.connect(x, 'connect'),
        })
        racer.hold(race.winner!.target, race.winner!.socket)
        const entries = targets.map((t) => ({ exchange: t.address, port: t.port }))
        out.track(entries, targets, record)
        assert.equal(record.observed, true)
        const { socket } = await getClient(entries[1])
        assert.equal(socket, race.winner!.socket)
        const { err } = await getClient(entries[0])
        assert.ok(err)
        assert.deepEqual(
          record.attempts.map((a) => [a.port, a.by, a.outcome, a.error, a.handedOver]),
          [
            [dead, 'race', 'failed', 'connect ECONNREFUSED', undefined],
            [port, 'race', 'connected', undefined, undefined],
            [port, 'haraka', 'connected', undefined, true],
            [dead, 'haraka', 'failed', 'connect ECONNREFUSED', undefined],
          ],
        )
        socket.destroy()
      })
    }

    describe('success = greeting', function () {
      // A server that writes `script` ([ms, text] steps) and records what the client sends.
      interface Received {
        received: string
        sentAll: boolean
      }
      interface Recorded {
        got: Received[]
        sockets: net.Socket[]
        timers: NodeJS.Timeout[]
        closed: number
      }
      let scripted: (Recorded & { server: net.Server; rec: Recorded }) | null
      beforeEach(function () {
        scripted = null
      })
      afterEach(async function () {
        if (!scripted) return
        for (const t of scripted!.timers) clearTimeout(t)
        for (const c of scripted.sockets) c.destroy()
        await new Promise<void>((resolve) => scripted!.server.close(() => resolve()))
      })
      async function script(steps: Array<[number, string]>): Promise<{ port: number; rec: Recorded }> {
        const rec: Recorded = { got: [], sockets: [], timers: [], closed: 0 }
        const server = net.createServer((c) => {
          rec.sockets.push(c)
          const conn: Received = { received: '', sentAll: false }
          rec.got.push(conn)
          c.on('error', () => {})
          c.on('data', (d: Buffer) => (conn.received += d))
          c.on('close', () => rec.closed++)
          let t = 0
          steps.forEach(([ms, text], i) => {
            t += ms
            rec.timers.push(
              setTimeout(() => {
                if (c.destroyed) return
                c.write(text)
                if (i === steps.length - 1) conn.sentAll = true
              }, t),
            )
          })
        })
        await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve))
        scripted = { ...rec, server, rec }
        return { port: portOf(server), rec }
      }
      // Haraka's side: listeners attached in the callback, every line it is given collected.
      const claimLines = (mx: PoolMx) =>
        new Promise<{ err: unknown; socket: HandedSocket; lines: string[] }>((resolve) => {
          const cb: PoolCallback = (err, socket) => {
            const lines: string[] = []
            socket?.on('line', (l: unknown) => lines.push(String(l)))
            resolve({ err, socket: socket as HandedSocket, lines })
          }
          if (version === '3.0.3') pool.get_client(mx.port, mx.exchange, mx.bind, false, cb)
          else pool.get_client(mx, cb)
        })
      const raceTo = (targets: RaceTarget[], record = new MessageConnects('pool.test')) => {
        const racer = out.bridge!.racerFor(record)
        return raceConnect(targets, {
          attemptDelayMs: 250,
          groupDelayMs: 2000,
          deadlineMs: 2000,
          success: 'greeting',
          connect: (x) => racer.connect(x, 'greeting'),
          release: (x) => racer.release!(x),
        }).then((race) => ({ race, racer, record }))
      }

      it('wins at the first greeting line and gives Haraka every line in order, the late last line too', async function () {
        const { port, rec } = await script([
          [0, '220-first line\r\n'],
          [300, '220 last line\r\n'],
        ])
        const t = target('127.0.0.1', port)
        const { race, racer, record } = await raceTo([t])
        assert.equal(race.attempts[0].greeting, '220-first line')
        racer.hold(t, race.winner!.socket)
        const { socket, lines } = await claimLines({ exchange: '127.0.0.1', port })
        assert.equal(socket, race.winner!.socket)
        await delay(500)
        assert.deepEqual(lines, ['220-first line\r\n', '220 last line\r\n'])
        assert.equal(rec.got[0].received, '', 'the race sent a byte')
        socket.write('EHLO x\r\n')
        await delay(50)
        assert.equal(rec.got[0].received, 'EHLO x\r\n')
        assert.deepEqual(
          record.attempts.map((a) => [a.by, a.outcome]),
          [['race', 'connected']],
        )
        socket.destroy()
      })

      it('a whole multi-line greeting in one packet reaches Haraka whole', async function () {
        const { port } = await script([[0, '220-a\r\n220-b\r\n220 c\r\n']])
        const t = target('127.0.0.1', port)
        const { race, racer } = await raceTo([t])
        racer.hold(t, race.winner!.socket)
        await delay(50)
        const { socket, lines } = await claimLines({ exchange: '127.0.0.1', port })
        await delay(50)
        assert.deepEqual(lines, ['220-a\r\n', '220-b\r\n', '220 c\r\n'])
        socket.destroy()
      })

      it("a 421 greeting is the attempt's failure, in the race and in the message's record", async function () {
        const { port } = await script([[0, '421 4.7.0 not now\r\n']])
        const t = target('127.0.0.1', port)
        const { race, record } = await raceTo([t])
        assert.equal(race.winner, undefined)
        assert.equal(race.attempts[0].error, 'greeting 421 4.7.0 not now')
        assert.deepEqual(
          record.attempts.map((a) => [a.outcome, a.error]),
          [['failed', 'greeting 421 4.7.0 not now']],
        )
      })

      it('release sends QUIT only after a complete greeting, then closes; after 220- alone it just closes', async function () {
        const complete = await script([[0, '220 ready\r\n']])
        const socket = out.bridge!.connect(target('127.0.0.1', complete.port), 'greeting')
        await new Promise((resolve) => socket.once('greeting', resolve))
        await delay(20)
        out.bridge!.release(socket)
        await delay(200)
        assert.equal(complete.rec.got[0].received, 'QUIT\r\n')
        assert.equal(complete.rec.closed, 1, 'not closed after QUIT')
        for (const t of scripted!.timers) clearTimeout(t)
        await new Promise<void>((resolve) => scripted!.server.close(() => resolve()))
        scripted = null

        const partial = await script([
          [0, '220-wait\r\n'],
          [1000, '220 ready\r\n'],
        ])
        const early = out.bridge!.connect(target('127.0.0.1', partial.port), 'greeting')
        await new Promise((resolve) => early.once('greeting', resolve))
        out.bridge!.release(early)
        await delay(200)
        assert.equal(partial.rec.got[0].received, '', 'a byte after 220- alone: a pre-greeting violation')
        assert.equal(partial.rec.closed, 1)
      })
    })

    it("passes an address it did not plan to Haraka's own get_client unchanged", async function () {
      const port = portOf(server)
      const { err, socket } = await getClient({ exchange: '127.0.0.1', port })
      assert.equal(err, null)
      assert.ok(socket)
      await delay(20)
      assert.equal(server.accepted, 1)
      assert.deepEqual(outcomes, [])
      socket.destroy()
    })

    it("times Haraka's own connects to planned addresses for the health cache", async function () {
      const deadPort = await freePort('127.0.0.1') // bound and released: nothing listens
      out.bridge!.plan([target('127.0.0.1', deadPort)])
      const { err } = await getClient({ exchange: '127.0.0.1', port: deadPort })
      assert.ok(err)
      assert.equal(outcomes.length, 1)
      assert.equal(outcomes[0][1].ok, false)
    })

    it('closes a won socket that Haraka never asks for', async function () {
      const port = portOf(server)
      const short = bindHarakaOutbound(req, { onOutcome() {}, log() {} })
      short.bridge!.uninstall()
      const bridge = new ClientPoolBridge({
        pool: { get_client: pool.get_client },
        createSocket: (o) => net.connect(o) as unknown as PoolSocket, // a net.Socket is a pool socket
        connectTimeoutS: () => 30,
        onOutcome() {},
        log() {},
        holdMs: 50,
      })
      const socket = bridge.connect(target('127.0.0.1', port))
      await new Promise((resolve) => socket.once('connect', resolve))
      bridge.hold(target('127.0.0.1', port), socket)
      assert.equal(bridge.heldCount, 1)
      await delay(120)
      assert.equal(bridge.heldCount, 0)
      assert.equal((socket as PoolSocket & { destroyed: boolean }).destroyed, true) // a net.Socket
    })
  })
}

/** A socket-shaped emitter: what the bridge needs of a pool socket, connecting nowhere. */
class FakeSocket extends EventEmitter {
  destroyed = false
  pause(): void {}
  resume(): void {}
  setTimeout(): void {}
  destroy(): void {
    this.destroyed = true
  }
}

// The bridge never ends a socket in these tests: a FakeSocket stands in without end().
const fakeSocket = (): PoolSocket => new FakeSocket() as unknown as PoolSocket

describe('client pool bridge: raced sockets Haraka never claims', function () {
  let logs: string[]
  let bridge: ClientPoolBridge
  let pool: { get_client: (mx: PoolMx, callback: PoolCallback) => void }

  beforeEach(function () {
    logs = []
    pool = {
      // the 3.1+ signature; Haraka's own connect is never reached in these tests
      get_client: function (mx: PoolMx, callback: PoolCallback) {
        void mx // named for detectPoolShape, which reads the first parameter's name
        callback('not connected in this test', null)
      },
    }
    bridge = new ClientPoolBridge({
      pool,
      createSocket: fakeSocket,
      connectTimeoutS: () => 30,
      onOutcome() {},
      log: (level, msg) => logs.push(`${level} ${msg}`),
      holdMs: 1,
    })
    assert.ok(bridge.install())
  })
  afterEach(function () {
    bridge.uninstall()
  })

  const t = (n: number) => target(`127.0.0.${n}`, 25)
  const holdUnclaimed = async (count: number) => {
    for (let i = 0; i < count; i++) bridge.hold(t(1), bridge.connect(t(1)))
    await delay(20)
  }
  const claim = () =>
    new Promise<PoolSocket | null>((resolve) => {
      bridge.hold(t(2), bridge.connect(t(2)))
      pool.get_client({ exchange: '127.0.0.2', port: 25 }, (_err, socket) => resolve(socket))
    })
  const offWarnings = () => logs.filter((l) => /not racing connections any more/.test(l))

  it(`turns racing off after ${UNCLAIMED_LIMIT} unclaimed in a row, with one warning`, async function () {
    assert.equal(bridge.racing, true)
    await holdUnclaimed(UNCLAIMED_LIMIT - 1)
    assert.equal(bridge.racing, true)
    await holdUnclaimed(1)
    assert.equal(bridge.racing, false)
    assert.equal(bridge.ready, true, 'planning and timing go on')
    await holdUnclaimed(3)
    assert.equal(offWarnings().length, 1, logs.join('\n'))
    assert.match(offWarnings()[0], /^warn .*never claimed by Haraka.*planning goes on/)
  })

  it('a claim in between resets the count', async function () {
    await holdUnclaimed(UNCLAIMED_LIMIT - 1)
    assert.ok(await claim())
    await holdUnclaimed(UNCLAIMED_LIMIT - 1)
    assert.equal(bridge.racing, true)
    assert.deepEqual(offWarnings(), [])
  })

  it('a held socket the peer closed is not counted as unclaimed', async function () {
    for (let i = 0; i < UNCLAIMED_LIMIT; i++) {
      const socket = bridge.connect(t(1))
      bridge.hold(t(1), socket)
      socket.emit('close')
    }
    await delay(20)
    assert.equal(bridge.racing, true)
  })
})

describe('client pool bridge on the 3.0.x shape: which message a connect belongs to', function () {
  it("writes Haraka's own connect to the entry the 3.0.x adapter says is being connected", async function () {
    const planned = new PlannedEntries()
    let current: object | undefined
    const pool = {
      get_client: function (
        port: number,
        host: string,
        _localAddr: unknown,
        _isUnix: boolean,
        callback: PoolCallback,
      ) {
        callback(`Outbound connection error: Error: connect ECONNREFUSED ${host}:${port}`, null)
      },
    }
    const bridge = new ClientPoolBridge({
      pool,
      createSocket: fakeSocket,
      connectTimeoutS: () => 30,
      onOutcome() {},
      log() {},
      planned,
      currentEntry: () => current,
    })
    assert.ok(bridge.install())
    try {
      const targets = [target('127.0.0.1', 25)]
      const entries = [{ exchange: '127.0.0.1', port: 25 }]
      const record = new MessageConnects('pool.test')
      planned.track(entries, targets, record)
      const connect = (host: string, port: number) =>
        new Promise<unknown>((resolve) => pool.get_client(port, host, undefined, false, resolve))
      // outside try_deliver_host (no current entry): not this message's connect
      await connect('127.0.0.1', 25)
      assert.deepEqual(record.attempts, [] as ConnectAttempt[])
      current = entries[0]
      // the current entry names another address: not this connect either
      await connect('127.0.0.2', 25)
      assert.deepEqual(record.attempts, [] as ConnectAttempt[])
      await connect('127.0.0.1', 25)
      assert.deepEqual(
        record.attempts.map((a) => [a.address, a.by, a.outcome, a.error]),
        [['127.0.0.1', 'haraka', 'failed', 'connect ECONNREFUSED']],
      )
    } finally {
      bridge.uninstall()
    }
  })
})
