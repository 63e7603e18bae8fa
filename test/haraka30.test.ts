// The Haraka 3.0.x delivery adapter on Haraka 3.0.3's own HMailItem and OutboundTLS: which
// entries it takes over, the TLS decisions it makes for them, the per-family copies, and
// that everything else reaches Haraka's code unchanged.

import assert from 'node:assert/strict'
import path from 'node:path'

import { MessageConnects } from '../lib/connects'
import {
  type HMail30,
  type Haraka30Modules,
  type Mx30,
  type TlsNaming,
  Haraka30Delivery,
  adaptTlsNaming,
  tlsNeedsNames,
} from '../lib/haraka30'
import { PlannedEntries } from '../lib/planned'
import type { RaceTarget } from '../lib/race'

const DIR = {
  '3.0.3': path.dirname(require.resolve('haraka30/package.json')),
  '3.3.4': path.dirname(require.resolve('Haraka/package.json')),
}
type Version = keyof typeof DIR

// Haraka ships no types: each module is read as the parts of it these tests use (below).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const req = <T>(version: Version, name: string): T => require(path.join(DIR[version], name)) as T

/** What one try_deliver_host call was handed, as a test's HMailItem records it. */
interface Delivery {
  mx?: Mx30
  force_tls?: boolean
  hostlist?: string[]
  temp_fail?: string
}

/** An HMailItem of Haraka 3.0.3's own class, with the record the tests keep on it. */
interface TestHMail extends HMail30 {
  todo: { domain: string; rcpt_to: unknown[]; notes: object; force_tls?: boolean }
  delivered_to: Delivery[]
  found_mx(err: unknown, mxs: Mx30[]): void
  temp_fail?(why: string): void
  extend_rcpt_with_dsn?(): void
}

type Method = (...args: never[]) => unknown

/** outbound/hmail: the HMailItem class, the steps the adapter wraps. */
interface HMailItemClass {
  prototype: { found_mx: Method; try_deliver: Method; try_deliver_host: Method }
}

/** outbound/tls: its tls.ini settings and the options for one connection. */
interface OutboundTls {
  cfg: { force_tls_hosts: string[]; no_tls_hosts: string[] }
  get_tls_options(mx: Mx30): { servername?: string }
}

const target = (address: string, exchange = 'mx.tls.test', port = 25): RaceTarget => ({
  address,
  family: address.includes(':') ? 'ipv6' : 'ipv4',
  exchange,
  preference: 10,
  port,
})

// Haraka's own copy of haraka-net-utils, as the plugin reads it (outbound.net_utils).
const ipInList = (version: Version): unknown =>
  req<{ net_utils: { ip_in_list: unknown } }>(version, 'outbound').net_utils.ip_in_list

function modules(version: Version): { hmail: unknown; tls: unknown; ipInList: unknown } {
  return {
    hmail: req(version, 'outbound/hmail'),
    tls: req(version, 'outbound/tls'),
    ipInList: ipInList(version),
  }
}

describe('Haraka 3.0.x delivery adapter', function () {
  const HMailItem = req<HMailItemClass>('3.0.3', 'outbound/hmail')
  const obtls = req<OutboundTls>('3.0.3', 'outbound/tls')
  const obc = req<{ cfg: { ipv6_enabled: boolean } }>('3.0.3', 'outbound/config')
  const originals = {
    found_mx: HMailItem.prototype.found_mx,
    try_deliver: HMailItem.prototype.try_deliver,
    try_deliver_host: HMailItem.prototype.try_deliver_host,
    get_tls_options: obtls.get_tls_options,
  }
  let planned: PlannedEntries
  let logs: string[]
  let naming: TlsNaming
  let savedTlsCfg: OutboundTls['cfg']
  let savedIpv6: boolean

  /** The adapter installed on 3.0.3 (beforeEach installs it). */
  function adapterOf(n: TlsNaming): Haraka30Delivery {
    if (n.kind !== 'adapted') throw new Error(`no adapter installed: ${n.kind}`)
    return n.adapter
  }

  after(function () {
    // Loading Haraka 3.0's outbound starts its retry queue's interval timer; a Haraka process
    // owns it, this test process must stop it.
    const queue = req<{ temp_fail_queue?: { interval_timer?: NodeJS.Timeout } }>('3.0.3', 'outbound/queue')
    if (queue.temp_fail_queue?.interval_timer) clearInterval(queue.temp_fail_queue.interval_timer)
  })

  beforeEach(function () {
    planned = new PlannedEntries()
    logs = []
    savedTlsCfg = obtls.cfg
    savedIpv6 = obc.cfg.ipv6_enabled
    obtls.cfg = { force_tls_hosts: [], no_tls_hosts: [] }
    naming = adaptTlsNaming(
      modules('3.0.3'),
      { planned, log: (level, msg) => logs.push(`${level} ${msg}`) },
      { legacyPool: true },
    )
  })

  afterEach(function () {
    if (naming.kind === 'adapted') adapterOf(naming).uninstall()
    obtls.cfg = savedTlsCfg
    obc.cfg.ipv6_enabled = savedIpv6
  })

  /** An HMailItem of 3.0.3's own class, connecting nowhere: try_deliver_host only records. */
  function hmail({
    domain = 'tls.test',
    force_tls,
  }: { domain?: string; force_tls?: boolean } = {}): TestHMail {
    // An instance of Haraka's class without its constructor (which reads a queue file).
    const h = Object.create(HMailItem.prototype) as TestHMail
    h.todo = { domain, rcpt_to: [], notes: {}, ...(force_tls ? { force_tls } : {}) }
    h.delivered_to = []
    h.try_deliver_host = function (mx: Mx30) {
      h.delivered_to.push({ mx, force_tls: h.force_tls, hostlist: [...(h.hostlist ?? [])] })
    }
    h.logdebug = () => {}
    return h
  }

  /** Entries as the plugin hands them over, registered for one message. */
  function plan(
    targets: RaceTarget[],
    extra: Partial<Mx30> = {},
  ): { entries: Mx30[]; record: MessageConnects } {
    const entries = targets.map((t, i) => ({
      exchange: t.address,
      priority: i,
      port: t.port,
      from_dns: t.exchange,
      ...extra,
    }))
    const record = new MessageConnects('tls.test')
    planned.track(entries, targets, record)
    return { entries, record }
  }

  it('installs on 3.0.3, and 3.3.4 needs nothing: it reads from_dns itself', function () {
    assert.equal(naming.kind, 'adapted')
    assert.notEqual(HMailItem.prototype.try_deliver, originals.try_deliver)
    assert.notEqual(obtls.get_tls_options, originals.get_tls_options)
    const v334 = adaptTlsNaming(modules('3.3.4'), { planned, log() {} }, { legacyPool: false })
    assert.equal(v334.kind, 'native')
  })

  it('is installed once: a second plugin instance reuses it, uninstall restores Haraka', function () {
    const wrapped = HMailItem.prototype.try_deliver
    const again = adaptTlsNaming(modules('3.0.3'), { planned, log() {} }, { legacyPool: true })
    assert.equal(adapterOf(again), adapterOf(naming))
    assert.equal(HMailItem.prototype.try_deliver, wrapped)
    assert.equal(Haraka30Delivery.installedOn(HMailItem), adapterOf(naming))
    adapterOf(naming).uninstall()
    assert.equal(HMailItem.prototype.found_mx, originals.found_mx)
    assert.equal(HMailItem.prototype.try_deliver, originals.try_deliver)
    assert.equal(HMailItem.prototype.try_deliver_host, originals.try_deliver_host)
    assert.equal(obtls.get_tls_options, originals.get_tls_options)
    assert.equal(Object.hasOwn(obtls, 'get_tls_options'), false)
    assert.equal(Haraka30Delivery.installedOn(HMailItem), undefined)
  })

  it('forces TLS for a planned address when force_tls_hosts names its MX host, as stock does for the host', function () {
    obtls.cfg.force_tls_hosts = ['mx.tls.test']
    const h = hmail()
    const { entries } = plan([target('127.0.0.1')])
    h.found_mx(null, entries)
    assert.equal(h.delivered_to.length, 1)
    assert.equal(h.delivered_to[0].mx, entries[0])
    assert.equal(h.delivered_to[0].force_tls, true)
    assert.deepEqual(h.delivered_to[0].hostlist, ['127.0.0.1'])
  })

  it('forces TLS by the domain, by todo.force_tls, regardless of case and a trailing dot, and not otherwise', function () {
    const cases: Array<[string[], { force_tls?: boolean }, boolean]> = [
      [['tls.test'], {}, true],
      [['MX.TLS.Test.'], {}, true],
      [['127.0.0.0/8'], {}, true],
      [[], { force_tls: true }, true],
      [['other.test'], {}, false],
      [[], {}, false],
    ]
    for (const [list, opts, forced] of cases) {
      obtls.cfg.force_tls_hosts = list
      const h = hmail(opts)
      const { entries } = plan([target('127.0.0.1')])
      h.found_mx(null, entries)
      assert.equal(h.delivered_to[0].force_tls, forced, JSON.stringify([list, opts]))
      // never the DNS lookup 3.0.x does for a forced exchange: the IP literal is the address
      assert.deepEqual(h.delivered_to[0].hostlist, ['127.0.0.1'])
    }
  })

  it('with ipv6_enabled, found_mx copies each entry per family: each address once, with its bind and name', function () {
    obc.cfg.ipv6_enabled = true
    const h = hmail()
    const { entries } = plan([target('::1'), target('127.0.0.1')], { bind: '127.0.0.9' })
    // Haraka's try_deliver_host moves on to the next entry when an address fails.
    h.try_deliver_host = function (mx: Mx30) {
      h.delivered_to.push({ mx })
      h.try_deliver()
    }
    h.temp_fail = (why: string) => h.delivered_to.push({ temp_fail: why })
    h.extend_rcpt_with_dsn = () => {}
    h.found_mx(null, entries)
    assert.equal(h.mxlist?.length, 0)
    assert.deepEqual(
      h.delivered_to.map((d) => d.temp_fail ?? [d.mx?.exchange, d.mx?.bind, d.mx?.from_dns]),
      [['::1', '127.0.0.9', 'mx.tls.test'], ['127.0.0.1', '127.0.0.9', 'mx.tls.test'], 'Tried all MXs'],
    )
  })

  it("leaves another plugin's IP-literal entries to Haraka's own try_deliver, even with from_dns", function () {
    obtls.cfg.force_tls_hosts = ['mx.other.test']
    const h = hmail()
    const foreign = [{ exchange: '127.0.0.1', priority: 0, port: 25, from_dns: 'mx.other.test' }]
    h.found_mx(null, foreign)
    assert.equal(h.delivered_to.length, 1)
    // stock 3.0.x: the IP literal is matched, not from_dns, so TLS is not forced
    assert.ok(!h.delivered_to[0].force_tls)
  })

  it("a list from a later get_mx round that is not the plugin's is not taken for its entries", function () {
    obtls.cfg.force_tls_hosts = ['mx.tls.test']
    const h = hmail()
    const { entries } = plan([target('127.0.0.1')])
    h.found_mx(null, entries)
    assert.equal(h.delivered_to[0].force_tls, true)
    // same priority, address and port, but handed over by someone else
    h.found_mx(null, [{ exchange: '127.0.0.1', priority: 0, port: 25 }])
    assert.ok(!h.delivered_to[1].force_tls)
  })

  it('TLS servername: the MX host for planned entries; the exchange for everything else', function () {
    const { entries } = plan([target('127.0.0.1')])
    assert.equal(obtls.get_tls_options(entries[0]).servername, 'mx.tls.test')
    assert.equal(
      obtls.get_tls_options({ exchange: '127.0.0.1', from_dns: 'mx.x.test' }).servername,
      '127.0.0.1',
    )
    assert.equal(obtls.get_tls_options({ exchange: 'mx.named.test' }).servername, 'mx.named.test')
    const { entries: literal } = plan([target('127.0.0.1', '127.0.0.1')])
    assert.equal(obtls.get_tls_options(literal[0]).servername, '127.0.0.1')
  })

  it('says which planned entry is being connected while try_deliver_host runs, and none after', function () {
    const { entries } = plan([target('127.0.0.1')])
    const h = hmail()
    // Haraka's own (wrapped), connecting through a stubbed pool
    delete (h as Partial<TestHMail>).try_deliver_host
    const pool = req<{ get_client: (port: number, host: string) => void }>('3.0.3', 'outbound/client_pool')
    const getClient = pool.get_client
    let seen: unknown[] | undefined
    pool.get_client = (port, host) => {
      seen = [port, host, adapterOf(naming).currentEntry()]
    }
    try {
      h.hostlist = ['127.0.0.1']
      h.try_deliver_host(entries[0])
    } finally {
      pool.get_client = getClient
    }
    assert.deepEqual(seen, [25, '127.0.0.1', entries[0]])
    assert.equal(adapterOf(naming).currentEntry(), undefined)
  })

  it('an unknown shape is not adapted: unavailable on a 3.0.x pool, unknown without any', function () {
    adapterOf(naming).uninstall()
    const shapes = { hmail: { prototype: {} }, tls: {}, ipInList: ipInList('3.0.3') }
    assert.equal(adaptTlsNaming(shapes, { planned, log() {} }, { legacyPool: true }).kind, 'unavailable')
    // No outbound modules at all, as when Haraka's cannot be loaded.
    const none = {} as Haraka30Modules
    assert.equal(adaptTlsNaming(none, { planned, log() {} }, { legacyPool: false }).kind, 'unknown')
    naming = adaptTlsNaming(modules('3.0.3'), { planned, log() {} }, { legacyPool: true })
  })

  it('without the adapter, messages keep Haraka routing whenever TLS could depend on the MX name', function () {
    assert.equal(tlsNeedsNames({ cfg: { force_tls_hosts: [] } }, { todo: {} }), undefined)
    assert.match(
      tlsNeedsNames({ cfg: { force_tls_hosts: ['mx.x.test'] } }, { todo: {} }) ?? '',
      /force_tls_hosts/,
    )
    assert.match(
      tlsNeedsNames({ cfg: { rejectUnauthorized: true } }, { todo: {} }) ?? '',
      /rejectUnauthorized/,
    )
    assert.match(tlsNeedsNames({ cfg: {} }, { todo: { force_tls: true } }) ?? '', /forced for this message/)
    assert.match(tlsNeedsNames(undefined, { todo: {} }) ?? '', /cannot be read/)
  })
})
