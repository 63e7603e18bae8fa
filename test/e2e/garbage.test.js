'use strict'

// Garbage in, nothing lost: bad happy_eyeballs.ini files, a config reload while messages are
// in flight, odd and hostile DNS answers at the get_mx hook, and internal failures. The
// in-process parts load the built plugin with haraka-test-fixtures; the rest runs real
// Haraka 3.3.4 processes on loopback.
//
// CNAME chains and loops are in test/resolve.test.js: haraka-test-fixtures' DNS server
// cannot serve CNAME records, test/support/cname-dns.js can.

const assert = require('node:assert/strict')
const fs = require('node:fs')
const fsp = require('node:fs/promises')
const os = require('node:os')
const path = require('node:path')

const fixtures = require('haraka-test-fixtures')
const constants = require('haraka-constants')
const iniReader = require('haraka-config/lib/readers/ini')

const {
  startSink,
  startBlackHole,
  startHaraka,
  sendMail,
  waitForOutcome,
  queuedUuid,
  freePort,
  seededRandom,
} = require('../../support')

const { defaultSettings } = require('../../dist/lib/config')
const { OPTIONS, getField } = require('../../dist/lib/options')

// ---------------------------------------------------------------------------------------

/** The plugin's settings keyed like the ini file ('race.deadline_ms'), lists as text. */
function byIniKey(s) {
  const out = {}
  for (const o of OPTIONS) {
    const value = getField(s, o.field)
    out[`${o.section}.${o.key}`] =
      o.type === 'cidr-list'
        ? value.map((c) => c.text)
        : o.type === 'block-list'
          ? [...value.map((c) => c.text), ...getField(s, o.rangesField)]
          : value
  }
  return out
}

// The defaults of the table, by ini key.
const DEFAULTS = byIniKey(defaultSettings())
const OPTION = Object.fromEntries(OPTIONS.map((o) => [`${o.section}.${o.key}`, o]))

const re = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/** How the default is shown after "using" in the warning for a bad value of `key`. */
function shownDefault(key) {
  const o = OPTION[key]
  assert.ok(o, `no option ${key}`)
  if (o.type === 'dns-servers') return '"the system resolvers"'
  if (o.type === 'address') return '"no bind"'
  if (o.type === 'listen') return '"no metrics"'
  if (o.type === 'text') return JSON.stringify(o.default ?? 'none')
  return JSON.stringify(o.default)
}

// Expected problems: each matches exactly one warning, naming the key.
const badValue = (key) => {
  const [section, name] = key.split('.')
  return new RegExp(
    `happy_eyeballs\\.ini: \\[${section}\\] ${re(name)}=.* is not .*; using ${re(shownDefault(key))}$`,
    's',
  )
}
const unknownKey = (section, key) =>
  new RegExp(`happy_eyeballs\\.ini: unknown key \\[${re(section)}\\] ${re(key)} ignored$`)
const unknownSection = (section) =>
  new RegExp(`happy_eyeballs\\.ini: unknown section \\[${re(section)}\\] ignored$`)
const badEntry = (list, item) =>
  new RegExp(`happy_eyeballs\\.ini: \\[filter\\] ${list} entry ${re(JSON.stringify(item))} is .*; ignored$`)

/** Deterministic junk bytes, with a few newlines so it spans lines. */
function junk(n, seed) {
  const random = seededRandom(seed)
  const out = Buffer.alloc(n)
  for (let i = 0; i < n; i++) out[i] = i % 61 === 60 ? 0x0a : Math.floor(random() * 256)
  return out
}

const LONG = 100000

/**
 * Variants: the file text, the problems it must produce (one warning each, no others unless
 * `extraWarnings`), and the keys it legitimately sets (`good`); every other key keeps its default.
 */
const VARIANTS = [
  // wrong types
  { name: 'enabled=maybe', text: '[main]\nenabled=maybe\n', problems: [badValue('main.enabled')] },
  { name: 'enabled=2 (a number)', text: '[main]\nenabled=2\n', problems: [badValue('main.enabled')] },
  { name: 'prefer=ipv5', text: '[main]\nprefer=ipv5\n', problems: [badValue('main.prefer')] },
  { name: 'prefer=6 (a number)', text: '[main]\nprefer=6\n', problems: [badValue('main.prefer')] },
  { name: 'prefer=both', text: '[main]\nprefer=both\n', problems: [badValue('main.prefer')] },
  {
    name: 'first_family_count=one',
    text: '[main]\nfirst_family_count=one\n',
    problems: [badValue('main.first_family_count')],
  },
  {
    name: 'first_family_count=1.5 (a float)',
    text: '[main]\nfirst_family_count=1.5\n',
    problems: [badValue('main.first_family_count')],
  },
  { name: 'port=twenty-five', text: '[main]\nport=twenty-five\n', problems: [badValue('main.port')] },
  { name: 'port=1e3', text: '[main]\nport=1e3\n', problems: [badValue('main.port')] },
  { name: 'port=0x19', text: '[main]\nport=0x19\n', problems: [badValue('main.port')] },
  {
    name: 'race enabled=sometimes',
    text: '[race]\nenabled=sometimes\n',
    problems: [badValue('race.enabled')],
  },
  { name: 'deadline_ms=soon', text: '[race]\ndeadline_ms=soon\n', problems: [badValue('race.deadline_ms')] },
  { name: 'deadline_ms=1e9', text: '[race]\ndeadline_ms=1e9\n', problems: [badValue('race.deadline_ms')] },
  { name: 'timeout_ms=5s', text: '[dns]\ntimeout_ms=5s\n', problems: [badValue('dns.timeout_ms')] },
  {
    name: 'all_filtered=drop',
    text: '[filter]\nall_filtered=drop\n',
    problems: [badValue('filter.all_filtered')],
  },
  { name: 'bind ipv4=::1 (wrong family)', text: '[bind]\nipv4=::1\n', problems: [badValue('bind.ipv4')] },
  {
    name: 'bind ipv6=127.0.0.1 (wrong family)',
    text: '[bind]\nipv6=127.0.0.1\n',
    problems: [badValue('bind.ipv6')],
  },
  { name: 'bind ipv4=localhost', text: '[bind]\nipv4=localhost\n', problems: [badValue('bind.ipv4')] },
  { name: 'servers=not-an-ip', text: '[dns]\nservers=not-an-ip\n', problems: [badValue('dns.servers')] },
  {
    name: 'servers with port 99999',
    text: '[dns]\nservers=127.0.0.1:99999\n',
    problems: [badValue('dns.servers')],
  },
  { name: 'servers with port 0', text: '[dns]\nservers=[::1]:0\n', problems: [badValue('dns.servers')] },
  {
    name: 'servers, one bad of two',
    text: '[dns]\nservers=127.0.0.1:53, resolver.example\n',
    problems: [badValue('dns.servers')],
  },
  // negatives and out of range
  { name: 'port=-5', text: '[main]\nport=-5\n', problems: [badValue('main.port')] },
  { name: 'port=0', text: '[main]\nport=0\n', problems: [badValue('main.port')] },
  { name: 'port=65536', text: '[main]\nport=65536\n', problems: [badValue('main.port')] },
  {
    name: 'first_family_count=0',
    text: '[main]\nfirst_family_count=0\n',
    problems: [badValue('main.first_family_count')],
  },
  {
    name: 'first_family_count=17',
    text: '[main]\nfirst_family_count=17\n',
    problems: [badValue('main.first_family_count')],
  },
  { name: 'max_addresses=1', text: '[main]\nmax_addresses=1\n', problems: [badValue('main.max_addresses')] },
  {
    name: 'max_addresses=-16',
    text: '[main]\nmax_addresses=-16\n',
    problems: [badValue('main.max_addresses')],
  },
  { name: 'timeout_ms=50', text: '[dns]\ntimeout_ms=50\n', problems: [badValue('dns.timeout_ms')] },
  {
    name: 'attempt_delay_ms=-5',
    text: '[race]\nattempt_delay_ms=-5\n',
    problems: [badValue('race.attempt_delay_ms')],
  },
  {
    name: 'attempt_delay_ms=5',
    text: '[race]\nattempt_delay_ms=5\n',
    problems: [badValue('race.attempt_delay_ms')],
  },
  {
    name: 'attempt_delay_ms=2001',
    text: '[race]\nattempt_delay_ms=2001\n',
    problems: [badValue('race.attempt_delay_ms')],
  },
  {
    name: 'group_delay_ms=-1',
    text: '[race]\ngroup_delay_ms=-1\n',
    problems: [badValue('race.group_delay_ms')],
  },
  { name: 'deadline_ms=99', text: '[race]\ndeadline_ms=99\n', problems: [badValue('race.deadline_ms')] },
  { name: 'ttl_s=-1', text: '[cache]\nttl_s=-1\n', problems: [badValue('cache.ttl_s')] },
  { name: 'max_entries=9', text: '[cache]\nmax_entries=9\n', problems: [badValue('cache.max_entries')] },
  // huge numbers
  {
    name: 'max_addresses=99999999999999999999',
    text: '[main]\nmax_addresses=99999999999999999999\n',
    problems: [badValue('main.max_addresses')],
  },
  {
    name: 'timeout_ms=999999999',
    text: '[dns]\ntimeout_ms=999999999\n',
    problems: [badValue('dns.timeout_ms')],
  },
  {
    name: 'group_delay_ms=30001',
    text: '[race]\ngroup_delay_ms=30001\n',
    problems: [badValue('race.group_delay_ms')],
  },
  { name: 'ttl_s=86401', text: '[cache]\nttl_s=86401\n', problems: [badValue('cache.ttl_s')] },
  {
    name: 'max_entries with 400 digits',
    text: `[cache]\nmax_entries=${'9'.repeat(400)}\n`,
    problems: [badValue('cache.max_entries')],
  },
  // unknown keys and sections
  { name: 'unknown key in [main]', text: '[main]\ncolour=blue\n', problems: [unknownKey('main', 'colour')] },
  {
    name: 'misspelt key in [race]',
    text: '[race]\nattempt_delay=100\n',
    problems: [unknownKey('race', 'attempt_delay')],
  },
  { name: 'unknown section', text: '[bogus]\nx=1\n', problems: [unknownSection('bogus')] },
  { name: 'section name in the wrong case', text: '[Main]\nport=26\n', problems: [unknownSection('Main')] },
  { name: 'empty section name', text: '[]\nport=26\n', problems: [unknownSection('')] },
  // bad CIDRs and unknown range names
  {
    name: 'allow 10.0.0.0/33',
    text: '[filter]\nallow[]=10.0.0.0/33\n',
    problems: [badEntry('allow', '10.0.0.0/33')],
  },
  { name: 'allow banana', text: '[filter]\nallow[]=banana\n', problems: [badEntry('allow', 'banana')] },
  {
    name: 'allow 300.1.1.1/8',
    text: '[filter]\nallow[]=300.1.1.1/8\n',
    problems: [badEntry('allow', '300.1.1.1/8')],
  },
  {
    name: 'allow fd00::/129',
    text: '[filter]\nallow[]=fd00::/129\n',
    problems: [badEntry('allow', 'fd00::/129')],
  },
  {
    name: 'allow 10.0.0.0/-1',
    text: '[filter]\nallow[]=10.0.0.0/-1\n',
    problems: [badEntry('allow', '10.0.0.0/-1')],
  },
  {
    name: 'block 10.0.0.0/99',
    text: '[filter]\nblock[]=10.0.0.0/99\n',
    problems: [badEntry('block', '10.0.0.0/99')],
  },
  {
    name: 'block not-a-range',
    text: '[filter]\nblock[]=not-a-range\n',
    problems: [badEntry('block', 'not-a-range')],
  },
  {
    name: 'block Private (range names are exact)',
    text: '[filter]\nblock[]=Private\n',
    problems: [badEntry('block', 'Private')],
  },
  {
    name: 'good and bad allow entries mixed',
    text: '[filter]\nallow[]=10.1.2.0/24\nallow[]=10.1.2.0/40\nallow[]=fd00:1::/64\n',
    problems: [badEntry('allow', '10.1.2.0/40')],
    good: { 'filter.allow': ['10.1.2.0/24', 'fd00:1::/64'] },
  },
  // empty files
  { name: 'empty file', text: '', problems: [] },
  {
    name: 'only comments and blank lines',
    text: '; nothing\n# nothing\n\n   \n[main]\n; still nothing\n',
    problems: [],
  },
  {
    name: 'empty values keep the defaults silently',
    text: '[main]\nport=\nprefer=   \n[race]\nenabled=\n',
    problems: [],
  },
  // binary junk
  { name: 'binary junk', text: junk(4096, 7), problems: [], extraWarnings: true },
  {
    name: 'NUL and invalid UTF-8 in a value',
    text: Buffer.concat([
      Buffer.from('[main]\nprefer='),
      Buffer.from([0, 0xff, 0xfe, 0x80]),
      Buffer.from('\n'),
    ]),
    problems: [badValue('main.prefer')],
  },
  { name: 'a full-width digit', text: '[main]\nport=２５\n', problems: [badValue('main.port')] },
  // duplicate keys: the last one wins, and a bad last one falls back to the default
  {
    name: 'duplicate key, the last one bad',
    text: '[main]\nport=26\nport=-1\n',
    problems: [badValue('main.port')],
  },
  {
    name: 'repeated section, the last value bad',
    text: '[main]\nprefer=ipv4\n[main]\nprefer=ipv9\n',
    problems: [badValue('main.prefer')],
  },
  {
    name: 'duplicate key, both the same good value',
    text: '[race]\ndeadline_ms=1000\ndeadline_ms=1000\n',
    problems: [],
    good: { 'race.deadline_ms': 1000 },
  },
  {
    name: 'an array where a number belongs',
    text: '[main]\nport[]=25\nport[]=26\n',
    problems: [badValue('main.port')],
  },
  // keys outside sections land in [main]
  {
    name: 'a [race] key above every section',
    text: 'attempt_delay_ms=5\n[race]\nenabled=true\n',
    problems: [unknownKey('main', 'attempt_delay_ms')],
  },
  { name: 'a bad port above every section', text: 'port=99999\n', problems: [badValue('main.port')] },
  // very long lines
  {
    name: `a ${LONG}-character value`,
    text: `[main]\nprefer=${'x'.repeat(LONG)}\n`,
    problems: [badValue('main.prefer')],
  },
  {
    name: `a ${LONG}-character CIDR`,
    text: `[filter]\nallow[]=10.${'0'.repeat(LONG)}/8\n`,
    // too long for a RegExp of its own
    problems: [
      {
        test: (w) => w.includes(`[filter] allow entry "10.${'0'.repeat(LONG)}/8" is not a CIDR; ignored`),
        toString: () => 'the long allow entry, quoted in full',
      },
    ],
  },
  {
    name: 'a 10,000-character key',
    text: `[main]\n${'k'.repeat(10000)}=1\n`,
    problems: [unknownKey('main', 'k'.repeat(10000))],
  },
  {
    name: 'a 10,000-character section name',
    text: `[${'s'.repeat(10000)}]\nport=1\n`,
    problems: [unknownSection('s'.repeat(10000))],
  },
  // lines the ini parser itself rejects
  {
    name: 'a line without "="',
    text: '[main]\njust some words\n',
    problems: [],
    parserComplains: /Invalid line/,
  },
  // '[race' is no section header, so it and the key after it are read as keys of [main]
  {
    name: 'an unclosed section header',
    text: '[race\nattempt_delay_ms=-5\n',
    problems: [unknownKey('main', '[race'), unknownKey('main', 'attempt_delay_ms')],
  },
  {
    name: 'CRLF line endings with a bad value',
    text: '[race]\r\nattempt_delay_ms=-5\r\n',
    problems: [badValue('race.attempt_delay_ms')],
  },
  {
    name: 'unsafe section and key names',
    text: '[__proto__]\nport=1\n[main]\nconstructor=1\nprototype=2\n',
    problems: [],
    parserComplains: /unsafe/,
  },
]

/**
 * Bad values for one option, from its type and range: each a line of the ini file, and the
 * problem it must produce.
 */
function badValuesOf(o) {
  const id = `${o.section}.${o.key}`
  const value = (v) => ({ line: `${o.key}=${v}`, problem: badValue(id) })
  const entry = (v) => ({ line: `${o.key}[]=${v}`, problem: badEntry(o.key, v) })
  switch (o.type) {
    case 'boolean':
      return ['perhaps', '2', 'truefalse'].map(value)
    case 'integer':
      return [o.min - 1, o.max + 1, `${o.default}.5`, `${o.default}ms`, '1e3', '-0x10'].map(value)
    case 'choice':
      return [`${o.choices[0]}x`, o.choices.join('|'), 'none'].map(value)
    case 'dns-servers':
      return ['resolver.example', '127.0.0.1:0', '[::1]'].map(value)
    case 'cidr-list':
      return ['10.0.0.0/33', 'not-a-cidr'].map(entry)
    case 'block-list':
      return ['::/129', 'not-a-range', 'Link-Local'].map(entry)
    case 'address':
      return [o.family === 'ipv4' ? '::1' : '127.0.0.1', 'localhost', '127.0.0.1/8'].map(value)
    case 'pattern-list':
      return (o.syntax === 'host' ? ['*', 'exa_mple.com', '*.', '192.0.2.1'] : ['(', '[a-']).map((v) => ({
        line: `${o.key}[]=${v}`,
        problem: new RegExp(
          `happy_eyeballs\\.ini: \\[${o.section}\\] ${o.key} entry ${re(JSON.stringify(v))} is .*; ignored$`,
        ),
      }))
    case 'listen':
      return ['localhost:9464', '127.0.0.1:0', '127.0.0.1:70000', '::1:9464', '9464'].map(value)
    case 'text':
      // Any one line is text; a list in its place is not.
      return [{ line: `${o.key}[]=x`, problem: badValue(id) }]
  }
  throw new Error(`no bad values for the option type ${o.type}`)
}

// Every option of the table, each way its type and range can be wrong: one variant each.
const GENERATED = OPTIONS.flatMap((o) =>
  badValuesOf(o).map(({ line, problem }) => ({
    name: `[${o.section}] ${line} (from the table)`,
    text: `[${o.section}]\n${line}\n`,
    problems: [problem],
  })),
)

// ---------------------------------------------------------------------------------------

describe('bad happy_eyeballs.ini files through haraka-config (in-process)', function () {
  const dirs = []
  let parserLog = []
  let originalIniLogger

  before(function () {
    originalIniLogger = iniReader.logger
    iniReader.logger = (msg) => parserLog.push(String(msg))
  })
  after(async function () {
    iniReader.logger = originalIniLogger
    for (const d of dirs) await fsp.rm(d, { recursive: true, force: true })
  })

  /** Loads `text` as Haraka would read config/happy_eyeballs.ini and registers the plugin. */
  function load(text) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'he-garbage-'))
    dirs.push(dir)
    fs.mkdirSync(path.join(dir, 'config'))
    fs.writeFileSync(path.join(dir, 'config', 'happy_eyeballs.ini'), text)
    parserLog = []
    const plugin = fixtures.makePlugin('happy-eyeballs', { register: false, configDir: dir })
    const warnings = []
    plugin.logwarn = (msg) => warnings.push(String(msg))
    try {
      assert.doesNotThrow(() => plugin.register())
    } finally {
      plugin.config.stop_watching('happy_eyeballs.ini')
    }
    return { plugin, warnings: warnings.filter((w) => w.includes('happy_eyeballs.ini')), parserLog }
  }

  it(`has at least 50 bad variants (${VARIANTS.length})`, function () {
    assert.ok(VARIANTS.filter((v) => v.problems.length || v.extraWarnings || v.parserComplains).length >= 50)
  })

  it('generates bad values for every option of the table', function () {
    const covered = new Set(GENERATED.map((v) => /^\[(\w+)\] (\w+)/.exec(v.name).slice(1).join('.')))
    assert.deepEqual([...covered], Object.keys(DEFAULTS))
  })

  for (const v of [...VARIANTS, ...GENERATED]) {
    it(`${v.name}: register() survives, each bad key is logged by name, defaults stay`, function () {
      const { plugin, warnings, parserLog: parsed } = load(v.text)
      for (const problem of v.problems) {
        const hits = warnings.filter((w) => problem.test(w))
        assert.equal(
          hits.length,
          1,
          `${problem} in warnings:\n${warnings.map((w) => w.slice(0, 300)).join('\n')}`,
        )
      }
      if (!v.extraWarnings) {
        assert.equal(
          warnings.length,
          v.problems.length,
          `unexpected warnings:\n${warnings.map((w) => w.slice(0, 300)).join('\n')}`,
        )
      }
      if (v.parserComplains)
        assert.ok(
          parsed.some((l) => v.parserComplains.test(l)),
          `parser said: ${parsed}`,
        )
      assert.deepEqual(byIniKey(plugin.happy_eyeballs.settings), { ...DEFAULTS, ...(v.good || {}) })
      assert.equal({}.port, undefined, 'config data reached Object.prototype')
    })
  }
})

// ---------------------------------------------------------------------------------------

/** A seed zone: an MX whose AAAA is link-local (never connected to) and whose A is 127.0.0.1. */
function seedZone(dns, domain) {
  dns.setZone(domain, { mx: [{ preference: 10, exchange: `mx.${domain}` }] })
  dns.setZone(`mx.${domain}`, { aaaa: ['fe80::d250:99ff:feda:9100'], a: ['127.0.0.1'] })
}

async function deliver(haraka, to) {
  const from = haraka.logLength()
  const info = await sendMail({ port: haraka.port, to })
  const uuid = queuedUuid(info)
  const outcome = await waitForOutcome(haraka, 45000, { from, uuid })
  return { outcome, uuid, log: haraka.log().slice(from) }
}

describe('Haraka 3.3.4 starts and delivers with bad happy_eyeballs.ini variants', function () {
  this.timeout(60000)

  const E2E = [
    {
      name: 'wrong types, negatives and huge numbers',
      text: '[main]\nenabled=maybe\nprefer=ipv5\nmax_addresses=99999999999999999999\nfirst_family_count=0\n[race]\nattempt_delay_ms=-5\ndeadline_ms=soon\n[cache]\nttl_s=-1\n',
      problems: [
        'main.enabled',
        'main.prefer',
        'main.max_addresses',
        'main.first_family_count',
        'race.attempt_delay_ms',
        'race.deadline_ms',
        'cache.ttl_s',
      ].map(badValue),
    },
    {
      name: 'unknown sections and keys, a key outside any section',
      text: 'colour=blue\n[bogus]\nx=1\n[race]\nattempt_delay=100\n[Main]\nprefer=ipv4\n',
      problems: [
        unknownKey('main', 'colour'),
        unknownSection('bogus'),
        unknownKey('race', 'attempt_delay'),
        unknownSection('Main'),
      ],
    },
    {
      name: 'bad CIDRs and unknown range names',
      text: '[filter]\nallow[]=127.0.0.0/33\nallow[]=banana\nblock[]=not-a-range\nblock[]=10.0.0.0/99\nall_filtered=drop\n',
      problems: [
        badEntry('allow', '127.0.0.0/33'),
        badEntry('allow', 'banana'),
        badEntry('block', 'not-a-range'),
        badEntry('block', '10.0.0.0/99'),
        badValue('filter.all_filtered'),
      ],
    },
    {
      name: 'binary junk and a 100,000-character line',
      text: Buffer.concat([junk(2048, 11), Buffer.from(`\n[main]\nprefer=${'x'.repeat(LONG)}\n`)]),
      problems: [badValue('main.prefer')],
    },
    {
      name: 'duplicate keys, an array for a number, binds of the wrong family',
      text: '[main]\nprefer=ipv4\n[main]\nprefer=ipv9\nfirst_family_count[]=1\nfirst_family_count[]=2\n[bind]\nipv4=::1\nipv6=127.0.0.1\n[dns]\ntimeout_ms=5s\n',
      problems: ['main.prefer', 'main.first_family_count', 'bind.ipv4', 'bind.ipv6', 'dns.timeout_ms'].map(
        badValue,
      ),
    },
  ]

  let dns
  let sink
  before(async function () {
    dns = await fixtures.dns.start({})
    sink = await startSink({ host: '127.0.0.1', port: await freePort() })
  })
  after(async function () {
    if (sink) await sink.close()
    if (dns) await dns.close()
  })

  for (const [i, v] of E2E.entries()) {
    it(`${v.name}: warnings in Haraka's log, and the seed message is delivered`, async function () {
      const domain = `seed${i}.test`
      seedZone(dns, domain)
      // Delivery essentials last: a repeated section merges and its later keys win. The test
      // host's only IPv6 is ::1, which is not allowed: the connectivity check off, the seed's
      // AAAA is still asked and its fe80:: filtered.
      const text = Buffer.concat([
        Buffer.from(v.text),
        Buffer.from(`\n[main]\nport=${sink.port}\nconnectivity_check_s=0\n[filter]\nallow[]=127.0.0.1/32\n`),
      ]).toString('latin1') // the harness writes text; every byte survives as a character
      const haraka = await startHaraka({
        version: '3.3.4',
        dnsPort: dns.port,
        plugins: ['happy-eyeballs'],
        files: { 'happy_eyeballs.ini': text },
      })
      try {
        const warnings = haraka
          .log()
          .split('\n')
          .filter((l) => /\[WARN\] .*\[happy-eyeballs\] happy-eyeballs: happy_eyeballs\.ini: /.test(l))
        for (const problem of v.problems) {
          assert.equal(
            warnings.filter((w) => problem.test(w)).length,
            1,
            `${problem} in:\n${warnings.join('\n').slice(0, 3000)}`,
          )
        }
        const before = sink.messages.length
        const { outcome, log } = await deliver(haraka, `rcpt@${domain}`)
        assert.equal(outcome.kind, 'delivered', outcome.line)
        assert.equal(outcome.ip, '127.0.0.1')
        assert.match(
          log,
          new RegExp(
            `happy-eyeballs: plan for ${re(domain)}: try mx\\.${re(domain)} 127\\.0\\.0\\.1; filtered fe80::`,
          ),
        )
        await sink.waitForMessages(before + 1, 5000)
      } finally {
        await haraka.stop()
      }
    })
  }
})

// ---------------------------------------------------------------------------------------

describe('Haraka 3.3.4: happy_eyeballs.ini rewritten while messages are in flight', function () {
  this.timeout(90000)

  let dns
  let hole
  let sink
  let haraka
  after(async function () {
    if (haraka) await haraka.stop()
    if (sink) await sink.close()
    if (hole) await hole.close()
    if (dns) await dns.close()
  })

  it('loses no message, and messages sent after the reload follow the new order (IPv4 first)', async function () {
    dns = await fixtures.dns.start({})
    dns.setZone('reload.test', { mx: [{ preference: 10, exchange: 'mx.reload.test' }] })
    dns.setZone('mx.reload.test', { aaaa: ['::1'], a: ['127.0.0.1'] })
    // The same port number: a black hole on [::1], a live sink on 127.0.0.1.
    hole = await startBlackHole({ host: '::1' })
    sink = await startSink({ host: '127.0.0.1', port: hole.port })
    // ttl_s=0: the health cache remembers nothing, so only the config can change the order.
    haraka = await startHaraka({
      version: '3.3.4',
      dnsPort: dns.port,
      plugins: ['happy-eyeballs'],
      files: {
        'happy_eyeballs.ini': `[main]\nprefer=ipv6\nport=${hole.port}\n[filter]\nallow[]=127.0.0.1/32\nallow[]=::1/128\n[cache]\nttl_s=0\n`,
      },
    })
    const iniPath = path.join(haraka.dir, 'config', 'happy_eyeballs.ini')
    const original = await fsp.readFile(iniPath, 'utf8')
    assert.match(
      original,
      new RegExp(`servers=127\\.0\\.0\\.1:${dns.port}`),
      'the rewrite must keep the loopback DNS',
    )

    const sent = []
    const send = (n) =>
      sendMail({ port: haraka.port, to: `rcpt${n}@reload.test` }).then((info) => {
        const uuid = queuedUuid(info)
        assert.ok(uuid, info.response)
        sent.push({ n, uuid })
      })

    // A burst in flight (each waits 250 ms on the black hole before IPv4 wins), then the rewrite.
    let n = 0
    await Promise.all([send(n++), send(n++), send(n++), send(n++)])
    const writtenAt = haraka.logLength()
    await fsp.writeFile(iniPath, original.replace('prefer=ipv6', 'prefer=ipv4'))

    // Keep messages flowing until haraka-config reports the reload (it waits 5 s for the file
    // to settle), so some are in flight at the moment the settings change.
    const reloadRe = new RegExp(`Reloaded file: ${re(iniPath)}`)
    let reloaded = null
    haraka.waitForLog(reloadRe, 20000, { from: writtenAt }).then(
      (m) => (reloaded = m),
      () => {},
    )
    const flowing = []
    while (!reloaded) {
      flowing.push(send(n++))
      await new Promise((r) => setTimeout(r, 300))
      assert.ok(n < 100, 'no reload seen')
    }
    await Promise.all(flowing)
    const reloadOffset = reloaded.offset

    const after = []
    for (let k = 0; k < 3; k++) {
      const from = haraka.logLength()
      const info = await sendMail({ port: haraka.port, to: `rcpt${n}@reload.test` })
      sent.push({ n: n++, uuid: queuedUuid(info) })
      after.push({ uuid: queuedUuid(info), from })
    }

    // Every message delivered: an outcome line each, and all of them at the sink.
    for (const m of sent) {
      const outcome = await waitForOutcome(haraka, 30000, { from: 0, uuid: m.uuid })
      assert.equal(outcome.kind, 'delivered', `message ${m.n}: ${outcome.line}`)
    }
    const messages = await sink.waitForMessages(sent.length, 10000)
    assert.equal(messages.length, sent.length)
    assert.deepEqual(messages.map((m) => m.to[0]).sort(), sent.map((m) => `rcpt${m.n}@reload.test`).sort())

    const planOf = (uuid) => {
      const m = new RegExp(
        `^.*\\[${re(uuid)}\\.\\d+\\] .*happy-eyeballs: plan for reload\\.test: try ([^;]*)`,
        'm',
      ).exec(haraka.log())
      assert.ok(m, `no plan line for ${uuid}`)
      return { order: m[1], offset: m.index }
    }
    const V6_FIRST = 'mx.reload.test [::1], mx.reload.test 127.0.0.1'
    const V4_FIRST = 'mx.reload.test 127.0.0.1, mx.reload.test [::1]'
    // Logged before the reload: planned with the old settings, so the old order.
    const plans = sent.map((m) => ({ ...m, ...planOf(m.uuid) }))
    for (const p of plans) if (p.offset < reloadOffset) assert.equal(p.order, V6_FIRST, `message ${p.n}`)
    assert.ok(
      plans.filter((p) => p.offset < reloadOffset).length >= 4,
      'the first burst was planned before the reload',
    )
    // Sent after the reload: the new order.
    for (const m of after) {
      assert.ok(m.from > reloadOffset)
      assert.equal(planOf(m.uuid).order, V4_FIRST)
    }
  })
})

// ---------------------------------------------------------------------------------------

function fakeHmail(domain) {
  const lines = []
  const log = (level) => (msg) => lines.push(`${level} ${msg}`)
  return {
    todo: { domain, rcpt_to: [{ original: `<user@${domain}>` }] },
    notes: {},
    lines,
    loginfo: log('info'),
    logwarn: log('warn'),
    logerror: log('error'),
    extend_rcpt_with_dsn() {},
  }
}

/** Calls the hook and resolves with its answer; rejects if it has not answered within the hook timeout. */
function callRoute(plugin, domain, hmail = fakeHmail(domain)) {
  return new Promise((resolve, reject) => {
    let calls = 0
    const limit = (Number(plugin.timeout) || 30) * 1000
    const timer = setTimeout(() => reject(new Error(`no answer within the ${limit} ms hook timeout`)), limit)
    plugin.route_mx(
      (code, value) => {
        calls++
        clearTimeout(timer)
        // Let a second call, if any, show up before reporting.
        setTimeout(() => resolve({ code, value, hmail, calls: () => calls }), 20)
      },
      hmail,
      domain,
    )
  })
}

describe('odd and hostile DNS answers at the get_mx hook (in-process)', function () {
  this.timeout(30000)

  const FAN_A = Array.from({ length: 500 }, (_, i) => `127.0.${i >> 8}.${i & 255}`)
  const FAN_AAAA = Array.from({ length: 500 }, (_, i) => `fd00::${(i + 1).toString(16)}`)
  const ZONES = {
    'literal.test': { mx: [{ preference: 10, exchange: '127.0.0.1' }] },
    'literal-other.test': { mx: [{ preference: 10, exchange: '127.0.0.2' }] },
    'literal-any.test': { mx: [{ preference: 10, exchange: '0.0.0.0' }] },
    'literal-v6.test': { mx: [{ preference: 10, exchange: '::1' }] },
    'self.test': { mx: [{ preference: 10, exchange: 'self.test' }], a: ['127.0.0.1'] },
    'xn--bcher-kva.example': { mx: [{ preference: 10, exchange: 'mx.xn--bcher-kva.example' }] },
    'mx.xn--bcher-kva.example': { a: ['127.0.0.1'] },
    'fan.test': { mx: [{ preference: 10, exchange: 'mx.fan.test' }] },
    'mx.fan.test': { aaaa: FAN_AAAA, a: FAN_A },
  }

  let dns
  before(async function () {
    dns = await fixtures.dns.start(ZONES)
  })
  after(async function () {
    if (dns) await dns.close()
  })

  function plugin(overrides = {}) {
    const p = fixtures.makePlugin('happy-eyeballs', { register: false })
    p.config.get = () => ({
      dns: { servers: `127.0.0.1:${dns.port}`, timeout_ms: '1000' },
      filter: { allow: ['127.0.0.1/32'] },
      ...overrides,
    })
    p.logwarn = () => {}
    p.register()
    // Outside Haraka there is no client pool: nothing here ever opens a connection.
    assert.equal(p.happy_eyeballs.outbound.bridge, undefined)
    return p
  }

  it('an MX that is an IP literal is taken as that address, and judged like any other', async function () {
    const p = plugin()
    const ok = await callRoute(p, 'literal.test')
    assert.equal(ok.code, constants.ok)
    assert.deepEqual(
      ok.value.map((m) => [m.exchange, m.from_dns]),
      [['127.0.0.1', '127.0.0.1']],
    )
    const other = await callRoute(p, 'literal-other.test')
    assert.equal(other.code, constants.denysoft)
    assert.match(other.value, /127\.0\.0\.2 of 127\.0\.0\.2: loopback/)
    const v6 = await callRoute(p, 'literal-v6.test')
    assert.equal(v6.code, constants.denysoft)
    assert.match(v6.value, /::1 of ::1: loopback/)
  })

  it('an MX literal 0.0.0.0 is refused even when every IPv4 address is allowed', async function () {
    const p = plugin({ filter: { allow: ['0.0.0.0/0'] } })
    const { code, value } = await callRoute(p, 'literal-any.test')
    assert.equal(code, constants.denysoft)
    assert.match(value, /0\.0\.0\.0 of 0\.0\.0\.0: unspecified/)
  })

  it('an MX pointing at the domain itself delivers to its address, without looping', async function () {
    const { code, value, calls } = await callRoute(plugin(), 'self.test')
    assert.equal(code, constants.ok)
    assert.equal(calls(), 1)
    assert.deepEqual(
      value.map((m) => [m.exchange, m.from_dns]),
      [['127.0.0.1', 'self.test']],
    )
  })

  it('an empty domain is no domain: one DENY, never an empty OK', async function () {
    const { code, value, calls } = await callRoute(plugin(), '')
    assert.equal(calls(), 1)
    assert.equal(code, constants.deny)
    assert.match(value, /not a valid domain name/)
  })

  it('a 300-character domain is no domain: one DENY', async function () {
    const long = `${Array.from({ length: 5 }, () => 'a'.repeat(59)).join('.')}.test`
    assert.ok(long.length >= 300)
    const { code, value, calls } = await callRoute(plugin(), long)
    assert.equal(calls(), 1)
    assert.equal(code, constants.deny)
    assert.match(value, /not a valid domain name/)
  })

  it('a 64-character label can never resolve (EBADNAME): one DENY, not endless deferrals', async function () {
    const domain = `${'b'.repeat(64)}.test`
    const { code, value, calls } = await callRoute(plugin(), domain)
    assert.equal(calls(), 1)
    assert.equal(code, constants.deny)
    assert.match(value, /not a valid domain name/)
  })

  it('an IDN domain is routed by its A-label', async function () {
    for (const u of ['bücher.example', 'BÜCHER.example.']) {
      const { code, value, hmail } = await callRoute(plugin(), u)
      assert.equal(code, constants.ok, u)
      assert.deepEqual(
        value.map((m) => [m.exchange, m.from_dns]),
        [['127.0.0.1', 'mx.xn--bcher-kva.example']],
      )
      assert.match(
        hmail.lines.join('\n'),
        /plan for xn--bcher-kva\.example: try mx\.xn--bcher-kva\.example 127\.0\.0\.1/,
      )
    }
  })

  it('1,000 addresses on one MX host: the answer is capped at max_addresses, both families kept', async function () {
    for (const max of [undefined, 2, 256]) {
      // This host has no IPv6 but ::1: the connectivity check off, the unique-local AAAA count.
      const p = plugin({
        main: { connectivity_check_s: '0', ...(max ? { max_addresses: String(max) } : {}) },
        filter: { allow: ['127.0.0.0/8', 'fd00::/8'] },
      })
      const { code, value, calls } = await callRoute(p, 'fan.test')
      const cap = max ?? 16
      assert.equal(calls(), 1)
      assert.equal(code, constants.ok)
      assert.equal(value.length, cap, `max_addresses=${cap}`)
      assert.ok(value.some((m) => m.exchange.includes(':')) && value.some((m) => !m.exchange.includes(':')))
      assert.ok(value.every((m) => FAN_A.includes(m.exchange) || FAN_AAAA.includes(m.exchange)))
    }
  })
})

// ---------------------------------------------------------------------------------------

describe('injected internal failures', function () {
  this.timeout(60000)

  describe('in-process: the hook still answers once, with CONT', function () {
    let dns
    let unhandled
    const onUnhandled = (err) => unhandled.push(err)
    before(async function () {
      dns = await fixtures.dns.start({
        'seed.test': { mx: [{ preference: 10, exchange: 'mx.seed.test' }] },
        'mx.seed.test': { aaaa: ['fe80::1'], a: ['127.0.0.1'] },
      })
    })
    after(async function () {
      if (dns) await dns.close()
    })
    beforeEach(function () {
      unhandled = []
      process.on('unhandledRejection', onUnhandled)
    })
    afterEach(function () {
      process.removeListener('unhandledRejection', onUnhandled)
    })

    function plugin() {
      const p = fixtures.makePlugin('happy-eyeballs', { register: false })
      p.config.get = () => ({
        dns: { servers: `127.0.0.1:${dns.port}`, timeout_ms: '1000' },
        filter: { allow: ['127.0.0.1/32'] },
      })
      p.logwarn = () => {}
      p.register()
      return p
    }

    async function assertContOnce(p, hmail) {
      const { code, value, calls } = await callRoute(p, 'seed.test', hmail)
      await new Promise((r) => setImmediate(r))
      assert.equal(calls(), 1)
      assert.equal(code, undefined, `expected CONT, got ${code} ${value}`)
      assert.deepEqual(unhandled, [], 'an unhandled rejection would exit Haraka')
    }

    it('(a) the health cache throws: CONT, the error logged', async function () {
      const p = plugin()
      const boom = () => {
        throw new Error('health cache exploded')
      }
      p.happy_eyeballs.health = { addressFailed: boom, familyFailed: boom, record: boom, lookup: boom }
      const hmail = fakeHmail('seed.test')
      await assertContOnce(p, hmail)
      assert.match(
        hmail.lines.join('\n'),
        /internal error, leaving seed\.test to Haraka: health cache exploded/,
      )
    })

    it("(b) Haraka's HarakaMx class throws when the answer is built: CONT", async function () {
      const p = plugin()
      p.happy_eyeballs.outbound = {
        ...p.happy_eyeballs.outbound,
        HarakaMx: class {
          constructor() {
            throw new Error('HarakaMx changed shape')
          }
        },
      }
      const hmail = fakeHmail('seed.test')
      await assertContOnce(p, hmail)
      assert.match(hmail.lines.join('\n'), /internal error.*HarakaMx changed shape/)
    })

    it("(c) the message's own log methods throw: the plan is still answered once, no unhandled rejection", async function () {
      const p = plugin()
      const hmail = fakeHmail('seed.test')
      for (const level of ['loginfo', 'logwarn', 'logerror']) {
        hmail[level] = () => {
          throw new Error(`${level} is broken`)
        }
      }
      const { code, value, calls } = await callRoute(p, 'seed.test', hmail)
      await new Promise((r) => setImmediate(r))
      assert.equal(calls(), 1)
      assert.equal(code, constants.ok)
      assert.deepEqual(
        value.map((m) => m.exchange),
        ['127.0.0.1'],
      )
      assert.deepEqual(unhandled, [], 'an unhandled rejection would exit Haraka')
    })
  })

  describe('Haraka 3.3.4 with a client pool of an unknown shape', function () {
    let dns
    let sink
    let haraka
    after(async function () {
      if (haraka) await haraka.stop()
      if (sink) await sink.close()
      if (dns) await dns.close()
    })

    // Loaded before happy-eyeballs: wraps get_client in a function whose parameter list
    // tells nothing about the signature, delegating every call to Haraka's own.
    const POOL_WRAPPER = `'use strict'
exports.register = function () {
  const pool = this.haraka_require('outbound/client_pool')
  const original = pool.get_client
  pool.get_client = function (...args) {
    return original.apply(this, args)
  }
  this.loginfo('outbound client_pool.get_client wrapped')
}
`

    it('logs "not racing connections" once and still delivers with the plan (planning on, racing off)', async function () {
      dns = await fixtures.dns.start({})
      seedZone(dns, 'shape.test')
      sink = await startSink({ host: '127.0.0.1', port: await freePort() })
      haraka = await startHaraka({
        version: '3.3.4',
        dnsPort: dns.port,
        plugins: ['pool_wrapper', 'happy-eyeballs'],
        pluginFiles: { pool_wrapper: POOL_WRAPPER },
        // The connectivity check off: the seed's AAAA is asked on this host without global IPv6.
        files: {
          'happy_eyeballs.ini': `[main]\nport=${sink.port}\nconnectivity_check_s=0\n[filter]\nallow[]=127.0.0.1/32\n`,
        },
      })
      assert.match(haraka.log(), /\[pool_wrapper\] outbound client_pool\.get_client wrapped/)
      const warned = haraka
        .log()
        .match(/happy-eyeballs: not racing connections: outbound client pool of an unknown shape/g)
      assert.equal(warned?.length, 1, 'the warning once')

      const { outcome, log } = await deliver(haraka, 'rcpt@shape.test')
      assert.equal(outcome.kind, 'delivered', outcome.line)
      assert.equal(outcome.ip, '127.0.0.1')
      const plan = /happy-eyeballs: plan for shape\.test: [^\n]*/.exec(log)
      assert.ok(plan, 'no plan line')
      assert.match(
        plan[0],
        /try mx\.shape\.test 127\.0\.0\.1; filtered fe80::d250:99ff:feda:9100 of mx\.shape\.test: link-local$/,
      )
      assert.doesNotMatch(plan[0], /race /)
      await sink.waitForMessages(1, 5000)
      assert.equal(sink.connections, 1)
    })
  })
})
